package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/imgtool/imgtool/build"
)

// newExecutor returns what runs RUN steps. Until the runner package lands
// it is util-linux unshare: user (caller mapped to root), mount and pid
// namespaces (and a network one for --network=none), the --mount list
// bound inside them, /proc mounted, then a chroot into the stage's root
// filesystem. With one id mapped, USER is not switched to: the process
// runs as root of its namespace.
func newExecutor() (build.Executor, error) {
	bin, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("RUN needs util-linux unshare on PATH: %w", err)
	}
	mount, err := exec.LookPath("mount")
	if err != nil {
		return nil, fmt.Errorf("RUN needs mount (util-linux) on PATH: %w", err)
	}
	return unshareExecutor{unshare: bin, mount: mount}, nil
}

type unshareExecutor struct{ unshare, mount string }

// unshareScript runs as root of the new user namespace: it makes the
// mounts ($1 rootfs, $2 working directory, $3 number of mounts, then
// type/source/target/ro quadruples, then argv) and execs unshare again to
// mount /proc and chroot. Host tools are named by absolute path: the
// environment is the image's.
const unshareScript = `set -e
unshare=$1 mount=$2 root=$3 wd=$4 n=$5; shift 5
while [ "$n" -gt 0 ]; do
	t=$1 src=$2 dst=$3 ro=$4; shift 4; n=$((n-1))
	if [ "$t" = tmpfs ]; then "$mount" -t tmpfs tmpfs "$root$dst"
	else "$mount" --bind "$src" "$root$dst"; if [ "$ro" = ro ]; then "$mount" -o remount,bind,ro "$root$dst"; fi; fi
done
exec "$unshare" --mount-proc --root="$root" --wd="$wd" -- "$@"
`

func (u unshareExecutor) Run(ctx context.Context, s build.RunSpec) (int, error) {
	proc := filepath.Join(s.Rootfs, "proc")
	if _, err := os.Lstat(proc); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(proc, 0o555); err != nil {
			return 0, err
		}
		defer os.Remove(proc)
	}
	args := []string{"--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child"}
	if s.Network == "none" {
		args = append(args, "--net") // a network namespace of its own: loopback only, and down
	}
	args = append(args, "/bin/sh", "-c", unshareScript, "sh", u.unshare, u.mount, s.Rootfs, s.Dir, strconv.Itoa(len(s.Mounts)))
	for _, m := range s.Mounts {
		ro := "rw"
		if m.ReadOnly {
			ro = "ro"
		}
		args = append(args, m.Type, m.Source, m.Target, ro)
	}
	args = append(args, s.Args...)
	cmd := exec.CommandContext(ctx, u.unshare, args...)
	cmd.Env = s.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdin, s.Stdout, s.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("run in namespaces: %w", err)
	}
	return 0, nil
}
