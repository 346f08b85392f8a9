package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	Msg  string `json:",omitempty"`
	Code int    `json:",omitempty"`
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

func readStatus(dec *json.Decoder) (status, error) {
	var st status
	err := dec.Decode(&st)
	if err != nil {
		return st, fmt.Errorf("read init status: %w", err)
	}
	return st, nil
}

// proc is the running init seen from the parent.
type proc struct {
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
	cmd := exec.CommandContext(ctx, initExe)
	cmd.Args = []string{initArg0}
	cmd.Env = []string{}
	cmd.ExtraFiles = []*os.File{cfgR, statusW}
	var consoleInit *os.File
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if s.Network == NetworkNone {
		flags |= unix.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	if !mapping.Helper {
		// Go writes these maps before the child execs, so the init starts
		// as root of its namespace with every capability there.
		cmd.SysProcAttr.UidMappings = sysMap(mapping.UIDs)
		cmd.SysProcAttr.GidMappings = sysMap(mapping.GIDs)
		cmd.SysProcAttr.GidMappingsEnableSetgroups = mapping.setGroups()
	}
	p := &proc{cmd: cmd, cfgW: cfgW, statusR: statusR, done: make(chan struct{})}
	if s.TTY {
		if p.term, consoleInit, err = newTerminal(stdio); err != nil {
			cfgR.Close()
			cfgW.Close()
			statusR.Close()
			statusW.Close()
			return nil, err
		}
		// The init's own diagnostics still reach the caller's stderr.
		cmd.ExtraFiles = append(cmd.ExtraFiles, consoleInit)
		cmd.Stderr = stdio.Stderr
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
	}
	err = cmd.Start()
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
			_ = p.cmd.Process.Signal(sig)
		case <-p.done:
			return
		}
	}
}

// wait returns the init's exit status, which is the command's.
func (p *proc) wait() int {
	err := p.cmd.Wait()
	close(p.done)
	if p.term != nil {
		p.term.drain()
	}
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// detachable reports whether Run may return before the init is reaped:
// only when no goroutine of exec.Cmd copies the stdio (those end with
// the init, and the caller expects the output complete) and no terminal
// needs draining.
func (p *proc) detachable() bool {
	return p.term == nil && isFileOrNil(p.cmd.Stdin) && isFileOrNil(p.cmd.Stdout) && isFileOrNil(p.cmd.Stderr)
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
	_ = p.cmd.Process.Kill()
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
