package runner

import (
	"context"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// directProcess is an init started by startDirect, with files as its
// standard streams, as exec.Cmd.Start would start it but through
// syscall.ForkExec, and handled by its pid: os.StartProcess and
// os.FindProcess first check, once per process, that pidfds work, by
// starting a vfork'd child and waiting for it, a third of a millisecond
// that every `imgtool run` would spend on its critical path. No pidfd is
// needed: the pid cannot be reused before wait reaps it, and signals are
// sent only until then.
type directProcess struct {
	pid    int
	mu     sync.Mutex
	reaped bool
}

// startDirect starts the init with streams (nil: /dev/null) as
// descriptors 0 to 2 and extra after them. Until done is closed, a
// cancelled ctx kills it, as with exec.CommandContext.
func startDirect(ctx context.Context, path string, argv, env []string, streams [3]any, extra []*os.File, sys *syscall.SysProcAttr, done <-chan struct{}) (*directProcess, error) {
	files := make([]*os.File, 0, 3+len(extra))
	for i, v := range streams {
		f, _ := v.(*os.File)
		if f == nil {
			flag := os.O_WRONLY
			if i == 0 {
				flag = os.O_RDONLY
			}
			null, err := os.OpenFile(os.DevNull, flag, 0)
			if err != nil {
				return nil, err
			}
			defer null.Close()
			f = null
		}
		files = append(files, f)
	}
	files = append(files, extra...)
	fds := make([]uintptr, len(files))
	for i, f := range files {
		fds[i] = f.Fd()
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env, Files: fds, Sys: sys})
	// The descriptors must stay open until the child has them.
	runtime.KeepAlive(files)
	if err != nil {
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	p := &directProcess{pid: pid}
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				_ = p.Kill()
			case <-done:
			}
		}()
	}
	return p, nil
}

// Signal sends sig, unless the init has been reaped.
func (p *directProcess) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return syscall.EINVAL
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	return syscall.Kill(p.pid, s)
}

func (p *directProcess) Kill() error { return p.Signal(syscall.SIGKILL) }

// Wait waits for the init to exit and reaps it. It first waits without
// reaping, so that a Signal racing with it never reaches a process that
// reused the pid.
func (p *directProcess) Wait() (syscall.WaitStatus, error) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == nil {
			break
		}
		if err != unix.EINTR {
			return 0, err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(p.pid, &ws, 0, nil)
		if err != syscall.EINTR {
			p.reaped = true
			return ws, err
		}
	}
}
