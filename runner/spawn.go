package runner

import (
	"context"
	"os"
	"runtime"
	"syscall"
)

// startDirect starts the init as exec.Cmd.Start would, for standard
// streams that are all files (nil: /dev/null), but through
// syscall.ForkExec: os.StartProcess first checks, once per process,
// that pidfds work, by starting a vfork'd child and waiting for it, a
// third of a millisecond that every `imgtool run` would spend before its
// container's clone. The os.Process comes from os.FindProcess once the
// init has started, where that check costs the run nothing: the init
// takes longer to start than the caller to prepare its config. Until
// done is closed, a cancelled ctx kills the init, as with
// exec.CommandContext.
func startDirect(ctx context.Context, path string, argv, env []string, streams [3]any, extra []*os.File, sys *syscall.SysProcAttr, done <-chan struct{}) (*os.Process, error) {
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
	process, err := os.FindProcess(pid)
	if err != nil {
		return nil, err
	}
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				_ = process.Kill()
			case <-done:
			}
		}()
	}
	return process, nil
}
