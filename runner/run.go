package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// initArg0 is the argv[0] that marks the hidden init.
const initArg0 = "imgtool-runner-init"

// IsInit reports whether this process is the runner's hidden init. A
// program that calls Run must check it first thing in main (and in
// TestMain) and then call Init.
func IsInit() bool { return len(os.Args) > 0 && os.Args[0] == initArg0 }

// config is what Run sends the init once the id maps are in place.
type config struct {
	Dir       string
	Rootfs    Rootfs
	Lower     []string
	Upper     string
	Work      string
	ReadOnly  bool
	Args      []string
	Env       []string
	Cwd       string
	User      string
	Hostname  string
	Network   Network
	Mounts    []Mount
	Hosts     []string
	TTY       bool
	Winsize   *winsize
	State     string // scratch mount point, a tmpfs inside
	SetGroups bool   // false when setgroups is denied (single-id mapping)
	Reexec    bool   // the maps were written after the init started
	// UnmappedUserAsRoot: see Spec.
	UnmappedUserAsRoot bool
}

// status is the init's one report before the command runs.
type status struct {
	Kind string // "ok", "overlay", "setup" or "exec"
	Msg  string
	Code int
}

// ErrExec: the command could not be executed (not found, not executable).
// Run returns it with exit status 127 or 126.
var ErrExec = errors.New("cannot execute")

// Run runs s in new namespaces and returns the process's exit status:
// its exit code, or 128+N when signal N killed it. A non-nil error means
// the command did not run (or, with ErrExec, could not be executed).
// Cancelling ctx kills every process of the container.
func Run(ctx context.Context, s Spec, stdio Stdio) (int, error) {
	if err := s.validate(); err != nil {
		return -1, err
	}
	c, err := Start(ctx, s, stdio)
	if err != nil {
		return -1, err
	}
	return c.Run(s)
}

// scratch returns the directory the init mounts its scratch tmpfs on.
func (s *Spec) scratch() (string, error) {
	if s.Mountpoint != "" {
		st, err := os.Lstat(s.Mountpoint)
		if err != nil {
			return "", fmt.Errorf("scratch mount point: %w", err)
		}
		if !st.IsDir() {
			return "", fmt.Errorf("scratch mount point %s is not a directory", s.Mountpoint)
		}
		return s.Mountpoint, nil
	}
	parent := s.StateDir
	if parent == "" {
		parent = os.TempDir()
	}
	state, err := os.MkdirTemp(parent, "imgtool-run-")
	if err != nil {
		return "", fmt.Errorf("create run state directory: %w", err)
	}
	return state, nil
}

// readStatus reads the init's next status report.
func readStatus(r io.Reader) (status, error) {
	var st status
	m, err := receive(r, 1<<16)
	if err == nil {
		err = st.decode(m)
	}
	if err != nil {
		return st, fmt.Errorf("read init status: %w", err)
	}
	return st, nil
}

// proc is the running init seen from the parent.
type proc struct {
	pid     int
	process interface {
		Signal(os.Signal) error
		Kill() error
	}
	// Either direct (the init's standard streams are files, see
	// startDirect) or cmd (through os/exec, whose Wait also finishes
	// copying the streams that are not files) is set.
	direct  *directProcess
	cmd     *exec.Cmd
	cfgW    *os.File
	statusR *os.File
	term    *terminal
	done    chan struct{}
}

func start(ctx context.Context, s *Spec, stdio Stdio, mapping idMapping, initExe string) (*proc, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		cfgW.Close()
		return nil, err
	}
	// By default the init is this binary itself; /proc/self/exe cannot be
	// swapped under us the way a path could.
	if initExe == "" {
		initExe = "/proc/self/exe"
	}
	argv, env := []string{initArg0}, []string{}
	extra := []*os.File{cfgR, statusW}
	var consoleInit *os.File
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if s.Network == NetworkNone {
		flags |= unix.CLONE_NEWNET
	}
	sys := &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	if !mapping.Helper {
		// Go writes these maps before the child execs, so the init starts
		// as root of its namespace with every capability there.
		sys.UidMappings = sysMap(mapping.UIDs)
		sys.GidMappings = sysMap(mapping.GIDs)
		sys.GidMappingsEnableSetgroups = mapping.setGroups()
	}
	p := &proc{cfgW: cfgW, statusR: statusR, done: make(chan struct{})}
	streams := [3]any{stdio.Stdin, stdio.Stdout, stdio.Stderr}
	if s.TTY {
		if p.term, consoleInit, err = newTerminal(stdio); err != nil {
			cfgR.Close()
			cfgW.Close()
			statusR.Close()
			statusW.Close()
			return nil, err
		}
		// The init's own diagnostics still reach the caller's stderr.
		extra = append(extra, consoleInit)
		streams = [3]any{nil, nil, stdio.Stderr}
	}
	if isFileOrNil(streams[0]) && isFileOrNil(streams[1]) && isFileOrNil(streams[2]) {
		if p.direct, err = startDirect(ctx, initExe, argv, env, streams, extra, sys, p.done); err == nil {
			p.pid, p.process = p.direct.pid, p.direct
		}
	} else {
		cmd := exec.CommandContext(ctx, initExe)
		cmd.Args, cmd.Env, cmd.ExtraFiles, cmd.SysProcAttr = argv, env, extra, sys
		cmd.Stdin, _ = streams[0].(io.Reader)
		cmd.Stdout, _ = streams[1].(io.Writer)
		cmd.Stderr, _ = streams[2].(io.Writer)
		if err = cmd.Start(); err == nil {
			p.cmd, p.pid, p.process = cmd, cmd.Process.Pid, cmd.Process
		}
	}
	cfgR.Close()
	statusW.Close()
	if consoleInit != nil {
		consoleInit.Close()
	}
	if err != nil {
		cfgW.Close()
		statusR.Close()
		if p.term != nil {
			p.term.close()
		}
		return nil, usernsError(err)
	}
	return p, nil
}

// usernsError explains a failed clone: almost always a kernel or sysctl
// that forbids unprivileged user namespaces.
func usernsError(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (%v): allow them with `sysctl -w kernel.unprivileged_userns_clone=1` (Debian, Ubuntu), `sysctl -w user.max_user_namespaces=15000`, or on Ubuntu 24.04 `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`", ErrNoUserns, err)
	}
	return fmt.Errorf("start the container init: %w", err)
}

// forward passes signals on to the init, which passes them to the command.
func (p *proc) forward(sigs <-chan os.Signal) {
	if sigs == nil {
		return
	}
	for {
		select {
		case sig := <-sigs:
			_ = p.process.Signal(sig)
		case <-p.done:
			return
		}
	}
}

// wait returns the init's exit status, which is the command's.
func (p *proc) wait() int {
	var ws syscall.WaitStatus
	var err error
	if p.direct != nil {
		ws, err = p.direct.Wait()
	} else {
		err = p.cmd.Wait()
		var ee *exec.ExitError
		if err == nil || errors.As(err, &ee) {
			ws, err = p.cmd.ProcessState.Sys().(syscall.WaitStatus), nil
		}
	}
	close(p.done)
	if p.term != nil {
		p.term.drain()
	}
	switch {
	case err != nil:
		return -1
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// detachable reports whether Run may return before the init is reaped:
// only when no goroutine of exec.Cmd copies the stdio (those end with
// the init, and the caller expects the output complete) and no terminal
// needs draining.
func (p *proc) detachable() bool {
	return p.term == nil && p.direct != nil
}

func isFileOrNil(v any) bool {
	switch f := v.(type) {
	case nil:
		return true
	case *os.File:
		return f != nil
	}
	return false
}

func (p *proc) kill() {
	_ = p.process.Kill()
	p.wait()
}

func (p *proc) close() {
	p.cfgW.Close()
	p.statusR.Close()
	if p.term != nil {
		p.term.close()
	}
}

func randomHostname() string {
	var b [6]byte
	if _, err := unix.Getrandom(b[:], 0); err != nil {
		return "imgtool"
	}
	return fmt.Sprintf("%x", b[:])
}
