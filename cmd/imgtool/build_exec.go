package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/imgtool/imgtool/build"
)

// newExecutor returns what runs RUN steps. Until the runner package lands
// it is this: new user, mount and pid namespaces (and a network one for
// --network=none) made by the Go runtime, the --mount list bound inside
// them by mount(8), then util-linux unshare to mount /proc, chroot into
// the stage's root filesystem, enter the working directory and become
// USER.
//
// Run by root, the user namespace maps every id to itself, so RUN can
// chown and USER is honoured. Run by anyone else it maps the caller to
// root alone (no subordinate ids without newuidmap): RUN runs as root of
// its namespace whatever USER says, and says so.
//
// It confines with chroot, not pivot_root, and keeps every capability of
// the namespace: a RUN step that is root in it can chroot its way out to
// the host's tree, with the caller's privileges. The runner package, which
// will replace this, owns real confinement; until then build Dockerfiles
// you would run yourself.
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

// unshareScript runs as root of the new namespaces: it makes the mounts
// ($1 unshare, $2 mount, $3 rootfs, $4 working directory, $5 number of
// mounts, then type/source/target/ro quadruples, then unshare's user
// flags up to --, then argv) and execs unshare to mount /proc and chroot.
// Host tools are named by absolute path: the environment is the image's.
const unshareScript = `set -e
unshare=$1 mount=$2 root=$3 wd=$4 n=$5; shift 5
while [ "$n" -gt 0 ]; do
	t=$1 src=$2 dst=$3 ro=$4; shift 4; n=$((n-1))
	if [ "$t" = tmpfs ]; then "$mount" -t tmpfs tmpfs "$root$dst"
	else "$mount" --bind "$src" "$root$dst"; if [ "$ro" = ro ]; then "$mount" -o remount,bind,ro "$root$dst"; fi; fi
done
exec "$unshare" --mount-proc --root="$root" --wd="$wd" "$@"
`

func (u unshareExecutor) Run(ctx context.Context, s build.RunSpec) (int, error) {
	userFlags, err := u.user(s)
	if err != nil {
		return 0, err
	}
	proc := filepath.Join(s.Rootfs, "proc")
	if _, err := os.Lstat(proc); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(proc, 0o555); err != nil {
			return 0, err
		}
		defer os.Remove(proc)
	}
	args := []string{"-c", unshareScript, "sh", u.unshare, u.mount, s.Rootfs, s.Dir, strconv.Itoa(len(s.Mounts))}
	for _, m := range s.Mounts {
		ro := "rw"
		if m.ReadOnly {
			ro = "ro"
		}
		args = append(args, m.Type, m.Source, m.Target, ro)
	}
	args = append(append(append(args, userFlags...), "--"), s.Args...)
	cmd := exec.CommandContext(ctx, "/bin/sh", args...)
	cmd.Env = s.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdin, s.Stdout, s.Stderr
	cmd.SysProcAttr = namespaces(s.Network == "none")
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("run in namespaces: %w", err)
	}
	return 0, nil
}

// user returns unshare's flags to become USER: only root can map the ids
// to switch to; others are told that USER is not honoured.
func (u unshareExecutor) user(s build.RunSpec) ([]string, error) {
	if s.User == "" {
		return nil, nil
	}
	uid, gid, err := build.ResolveUser(s.Rootfs, s.User)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		if uid != 0 || gid != 0 {
			fmt.Fprintf(orDiscard(s.Stderr), "imgtool: RUN as USER %s needs root or imgtool's runner; running as root of the user namespace\n", s.User)
		}
		return nil, nil
	}
	return []string{"--setgid", strconv.Itoa(gid), "--setuid", strconv.Itoa(uid)}, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// namespaces is the process attributes of a RUN: new user, mount and pid
// (and, for --network=none, network) namespaces, killed with imgtool.
func namespaces(noNetwork bool) *syscall.SysProcAttr {
	flags := uintptr(syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID)
	if noNetwork {
		flags |= syscall.CLONE_NEWNET // loopback only, and down
	}
	a := &syscall.SysProcAttr{Cloneflags: flags, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		// Root may map every id to itself: chown works and ids stay
		// what they are on the host, which the layer records.
		all := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1<<32 - 1}}
		a.UidMappings, a.GidMappings = all, all
		a.GidMappingsEnableSetgroups = true // becoming USER drops supplementary groups
		return a
	}
	a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
	a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	a.GidMappingsEnableSetgroups = false
	return a
}
