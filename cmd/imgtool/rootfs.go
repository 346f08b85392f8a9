package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imgtool/imgtool/runner"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/unpack"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// runRootfs is an image's filesystem prepared for one run.
type runRootfs struct {
	dir     string
	mode    runner.Rootfs
	release func()
}

// imageRootfs unpacks the image into a private directory under the data
// root that the run may modify; it is removed on release.
func (o *globalOptions) imageRootfs(ctx context.Context, s *store.Store, m ocispec.Manifest, mode runner.Rootfs) (*runRootfs, error) {
	tmp := filepath.Join(o.root, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tmp, "run-")
	if err != nil {
		return nil, err
	}
	rootfs := filepath.Join(dir, "rootfs")
	rep, err := unpack.Image(ctx, s, m, rootfs, unpack.Options{Rootless: os.Geteuid() != 0})
	for _, w := range rep.Warnings {
		fmt.Fprintf(os.Stderr, "warning: %s: %s\n", w.Path, w.Reason)
	}
	if err != nil {
		removeTree(dir)
		return nil, err
	}
	if mode == runner.Ephemeral {
		mode = runner.Writable
	}
	return &runRootfs{dir: rootfs, mode: mode, release: func() { removeTree(dir) }}, nil
}

// removeTree removes a tree whose directories a layer may have made
// read-only.
func removeTree(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	_ = os.RemoveAll(dir)
}
