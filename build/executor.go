package build

import (
	"context"
	"errors"
	"io"
)

// Executor runs one RUN step's process inside Rootfs, which the build owns
// and which the process may modify.
type Executor interface {
	Run(ctx context.Context, s RunSpec) (exitCode int, err error)
}

// RunSpec is one RUN step's process.
type RunSpec struct {
	Rootfs string // the stage's writable root filesystem
	// Lower, when set, is the root filesystem instead of Rootfs: layers
	// (uppermost first) that the executor mounts read-only as an overlay
	// under Upper, which receives the process's changes in overlayfs's
	// form, Work being overlayfs's work directory beside it. An executor
	// that cannot mount it returns an error wrapping ErrNoOverlay before
	// running anything, and the build falls back to Rootfs.
	Lower       []string
	Upper, Work string

	Args    []string // argv, already in exec form (shell form → SHELL + command)
	Env     []string // KEY=VALUE, final
	Dir     string   // working directory inside Rootfs (created before Run; with Lower, by the executor when missing: root's, 0755, as the runner makes it)
	User    string   // USER as written ("name", "uid", "name:group", "uid:gid"), resolved by the executor in the rootfs
	Network string   // "", "none" or "host"
	Mounts  []Mount  // RUN --mount: bind (from context or a stage), tmpfs, cache (host dir kept under the data root), secret (file)
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
}

// Mount is one RUN --mount as the executor makes it. Cache and secret
// mounts arrive as bind mounts of host directories and files the build
// prepared; Target exists in Rootfs before Run.
type Mount struct {
	Type     string // bind or tmpfs
	Source   string // host path (bind)
	Target   string // path inside Rootfs
	ReadOnly bool
}

// ErrNoOverlay is what an Executor returns when it cannot mount a RunSpec's
// overlay (the kernel refuses overlayfs in a user namespace).
var ErrNoOverlay = errors.New("overlay root filesystems are not available")
