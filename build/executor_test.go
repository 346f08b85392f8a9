package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
)

// unshareExecutor runs RUN steps for real, rootless, with util-linux
// unshare: new user (the caller mapped to root), mount and pid
// namespaces, /proc mounted, the mounts bound, then chroot into the
// rootfs, or into the overlay a RunSpec with Lower asks for. It stands in
// for the runner package in tests. noOverlay makes it refuse overlays,
// as a kernel without overlayfs in user namespaces does; ran counts the
// overlay runs.
type unshareExecutor struct {
	noOverlay bool
	overlays  *atomic.Int32
}

// overlayScript mounts the overlay ($1 options) on $2 inside the new
// namespaces, makes the working directory ($3) as the runner does, runs
// the command chrooted there, and removes the /proc mount point it made,
// as the runner removes its mount points. Exit status 97 says the mount
// failed.
const overlayScript = `root=$2 wd=$3
/usr/bin/mount -t overlay overlay -o "$1" "$root" || exit 97
shift 3
set -e
mkdir -p "$root$wd"
made=; [ -e "$root/proc" ] || { mkdir "$root/proc"; made=1; }
set +e
/usr/bin/unshare --mount-proc --root="$root" --wd="$wd" -- "$@"; rc=$?
[ -z "$made" ] || rmdir "$root/proc"
exit $rc
`

// script mounts the RUN mounts inside the new namespaces, then execs
// unshare again to chroot ($1 rootfs, $2 working directory, $3 number of
// mount triples, then triples type source target, then argv).
const unshareScript = `set -e
root=$1 wd=$2 n=$3; shift 3
while [ "$n" -gt 0 ]; do
	t=$1 src=$2 dst=$3 ro=$4; shift 4; n=$((n-1))
	if [ "$t" = tmpfs ]; then /usr/bin/mount -t tmpfs tmpfs "$root$dst"
	else /usr/bin/mount --bind "$src" "$root$dst"; [ "$ro" = ro ] && /usr/bin/mount -o remount,bind,ro "$root$dst"; fi
done
exec /usr/bin/unshare --mount-proc --root="$root" --wd="$wd" -- "$@"
`

func (u unshareExecutor) Run(ctx context.Context, s RunSpec) (int, error) {
	if len(s.Lower) > 0 {
		return u.overlay(ctx, s)
	}
	proc := filepath.Join(s.Rootfs, "proc")
	if _, err := os.Lstat(proc); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(proc, 0o555); err != nil {
			return 0, err
		}
		defer os.Remove(proc)
	}
	args := []string{"--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child",
		"/bin/sh", "-c", unshareScript, "sh", s.Rootfs, s.Dir, fmt.Sprint(len(s.Mounts))}
	for _, m := range s.Mounts {
		ro := "rw"
		if m.ReadOnly {
			ro = "ro"
		}
		args = append(args, m.Type, m.Source, m.Target, ro)
	}
	args = append(args, s.Args...)
	return runUnshare(ctx, s, args)
}

func (u unshareExecutor) overlay(ctx context.Context, s RunSpec) (int, error) {
	if u.noOverlay || len(s.Mounts) > 0 {
		return 0, fmt.Errorf("%w: refused for the test", ErrNoOverlay)
	}
	if u.overlays != nil {
		u.overlays.Add(1)
	}
	mnt, err := os.MkdirTemp("", "overlay-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(mnt)
	opts := "lowerdir=" + strings.Join(s.Lower, ":") + ",upperdir=" + s.Upper + ",workdir=" + s.Work + ",userxattr"
	args := append([]string{"--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child",
		"/bin/sh", "-c", overlayScript, "sh", opts, mnt, s.Dir}, s.Args...)
	code, err := runUnshare(ctx, s, args)
	if err == nil && code == 97 {
		return 0, fmt.Errorf("%w: the overlay mount failed", ErrNoOverlay)
	}
	return code, err
}

func runUnshare(ctx context.Context, s RunSpec, args []string) (int, error) {
	cmd := exec.CommandContext(ctx, "/usr/bin/unshare", args...)
	cmd.Env = s.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdin, s.Stdout, s.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		return ee.ExitCode(), nil
	}
	return 0, err
}
