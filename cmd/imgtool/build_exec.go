//go:build !imgtool_lean

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/imgtool/imgtool/build"
	"github.com/imgtool/imgtool/runner"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
)

// newExecutor returns what runs RUN steps: the runner package, rootless,
// with the stage's layers as an overlay whose upper directory holds the
// step's changes, or the stage's root filesystem bound writable so that
// the build can diff it afterwards.
func newExecutor(o *globalOptions) (build.Executor, error) {
	state := filepath.Join(o.root, "tmp")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	return &runnerExecutor{stateDir: state, notice: o.noticeOnce(), init: o.initExe()}, nil
}

type runnerExecutor struct {
	stateDir string
	notice   io.Writer
	init     string // the embedded container init, when there is one
}

func (r *runnerExecutor) Run(ctx context.Context, s build.RunSpec) (int, error) {
	spec := runner.Spec{
		Dir: s.Rootfs, Rootfs: runner.Writable,
		Args: s.Args, Env: s.Env, Cwd: s.Dir, User: s.User,
		StateDir: r.stateDir, Notice: r.notice, Init: r.init,
		// As the build's unshare executor did, and buildah without subuids.
		UnmappedUserAsRoot: true,
	}
	if n := len(s.Lower); n > 0 {
		// The stage's layers as an overlay: the changes stay in Upper.
		spec.Rootfs, spec.Dir, spec.Lower, spec.Upper, spec.Work = runner.Layered, s.Lower[n-1], s.Lower[:n-1], s.Upper, s.Work
	}
	if s.Network == "none" {
		spec.Network = runner.NetworkNone
	}
	for _, m := range s.Mounts {
		switch m.Type {
		case "tmpfs":
			spec.Mounts = append(spec.Mounts, runner.Mount{Target: m.Target, Tmpfs: true})
		case "bind":
			spec.Mounts = append(spec.Mounts, runner.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
		default:
			return 0, fmt.Errorf("RUN --mount type %q reached the executor", m.Type)
		}
	}
	code, err := runner.Run(ctx, spec, runner.Stdio{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr})
	if errors.Is(err, runner.ErrNoOverlay) {
		return code, fmt.Errorf("%w: %w", build.ErrNoOverlay, err)
	}
	if errors.Is(err, runner.ErrExec) {
		// As a shell would: the step fails with 127 and says why.
		if s.Stderr != nil {
			fmt.Fprintln(s.Stderr, err)
		}
		return code, nil
	}
	return code, err
}

// newBuilder is the build package wired to this data root: temporary
// files and caches under it, RUN through newExecutor, base images pulled
// into the store.
func (o *globalOptions) newBuilder(ctx context.Context, s *store.Store, show bool) (*build.Builder, error) {
	exe, err := newExecutor(o)
	if err != nil {
		exe = missingExecutor{err} // Dockerfiles without RUN build without one
	}
	var progress io.Writer
	if show {
		progress = os.Stderr
	}
	cache, err := o.openBuildCache()
	if err != nil {
		return nil, err
	}
	uc, err := o.openCache(ctx)
	if err != nil {
		return nil, err
	}
	return &build.Builder{
		Store: s, Executor: exe, Progress: progress,
		TempDir:  filepath.Join(o.root, "tmp"),
		CacheDir: o.buildCacheDir(),
		Cache:    cache,
		Unpack:   uc,
		Pull: func(ctx context.Context, ref string) error {
			_, err := o.resolveOrPull(ctx, s, transport.Location{Kind: transport.Registry, Ref: ref})
			return err
		},
	}, nil
}

// missingExecutor reports, at the first RUN, why RUN cannot run here.
type missingExecutor struct{ err error }

func (m missingExecutor) Run(context.Context, build.RunSpec) (int, error) { return 0, m.err }
