package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/runner"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/unpack"
)

// openCache opens the unpack cache under the data root, in the ownership
// mode this user unpacks in.
func (o *globalOptions) openCache(ctx context.Context) (*unpack.Cache, error) {
	return unpack.OpenCache(ctx, o.unpackCacheDir(), unpack.Options{Rootless: os.Geteuid() != 0})
}

// leaseRootfs returns the image's filesystem from the unpack cache
// (unpacking what is missing), held against prune until released.
func (o *globalOptions) leaseRootfs(ctx context.Context, s *store.Store, layers []manifest.LayerDesc) (*unpack.Lease, error) {
	c, err := o.openCache(ctx)
	if err != nil {
		return nil, err
	}
	l, err := c.Rootfs(ctx, s, layers)
	if err != nil {
		return nil, err
	}
	for _, w := range l.Applied.Warnings {
		fmt.Fprintf(os.Stderr, "warning: %s: %s\n", w.Path, w.Reason)
	}
	return l, nil
}

// runWithRootfs runs spec in c over the cached filesystem: as the lower
// layer of an overlay, or, where the kernel refuses overlay in a user
// namespace, over a private copy that is removed afterwards (in a new
// container when c is spent on the overlay attempt).
func (o *globalOptions) runWithRootfs(ctx context.Context, c *runner.Container, lease *unpack.Lease, spec runner.Spec, stdio runner.Stdio) (int, error) {
	spec.Dir = lease.Dir
	spec.StateDir = filepath.Join(o.root, "tmp")
	if err := os.MkdirAll(spec.StateDir, 0o700); err != nil {
		return -1, err
	}
	// One mount point for every run: each mounts its tmpfs there in its
	// own namespace, and nothing is created or removed per run.
	spec.Mountpoint = filepath.Join(o.root, "mnt")
	if err := os.Mkdir(spec.Mountpoint, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return -1, err
	}
	// IMGTOOL_NO_OVERLAY=1 takes the copy path on kernels whose overlay
	// in user namespaces misbehaves (and lets the tests take it).
	if os.Getenv("IMGTOOL_NO_OVERLAY") != "1" {
		code, err := c.Run(spec)
		if !errors.Is(err, runner.ErrNoOverlay) {
			return code, err
		}
		c = nil
	}
	dir, err := os.MkdirTemp(spec.StateDir, "rootfs-")
	if err != nil {
		return -1, err
	}
	defer removeTree(dir)
	copyDir := filepath.Join(dir, "rootfs")
	if err := unpack.Clone(ctx, lease.Dir, copyDir, false); err != nil {
		return -1, fmt.Errorf("copy the image's filesystem: %w", err)
	}
	spec.Dir, spec.Rootfs = copyDir, runner.Writable
	if c != nil {
		return c.Run(spec)
	}
	return runner.Run(ctx, spec, stdio)
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
