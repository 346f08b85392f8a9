package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// unshareExecutor runs RUN steps for real, rootless, with util-linux
// unshare: new user (the caller mapped to root), mount and pid
// namespaces, /proc mounted, the mounts bound, then chroot into the
// rootfs. It stands in for the runner package in tests.
type unshareExecutor struct{}

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

func (unshareExecutor) Run(ctx context.Context, s RunSpec) (int, error) {
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
