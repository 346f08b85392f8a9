//go:build !imgtool_lean

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/imgtool/imgtool/build"
)

// gitContext checks the build context out when PATH is a git URL rather
// than a directory, as docker build does (URL#REF:SUBDIR, git@host:repo,
// and file:///repo for a local one), into a directory under tmp that
// cleanup removes (call it whatever the error). A directory PATH is
// returned as it is. secrets (id → file) may hold the GIT_AUTH_TOKEN or
// GIT_AUTH_HEADER an https repository needs, as for BuildKit.
func gitContext(ctx context.Context, arg, tmp string, secrets map[string]string, progress io.Writer) (string, func(), error) {
	cleanup := func() {}
	if _, err := os.Stat(arg); err == nil {
		return arg, cleanup, nil
	}
	g, ok, err := build.ParseGitSource(arg, true, true)
	if err != nil {
		return "", cleanup, usageError{err}
	}
	if !ok {
		return arg, cleanup, nil // the build says it is not there
	}
	warn := func(msg string) { fmt.Fprintf(progress, "#0 [Warning] %s\n", msg) }
	if g, err = g.WithSecrets(secrets, warn); err != nil {
		return "", cleanup, err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return "", cleanup, err
	}
	dir, err := os.MkdirTemp(tmp, "git-context-")
	if err != nil {
		return "", cleanup, fmt.Errorf("make temporary directory: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	root, commit, err := g.Checkout(ctx, filepath.Join(dir, "repo"))
	if err != nil {
		return "", cleanup, fmt.Errorf("build context: %w", err)
	}
	fmt.Fprintf(progress, "#0 [internal] load git context %s at %s\n", arg, commit)
	return root, cleanup, nil
}

// inContext resolves -f inside a git context: a relative path there
// names a file of the repository, which must not lead out of it.
func inContext(contextDir, file string) (string, error) {
	if file == "" || file == "-" || filepath.IsAbs(file) {
		return file, nil
	}
	return securejoin.SecureJoin(contextDir, file)
}
