package runner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Init is the hidden init's main: it never returns. Call it when IsInit.
func Init() {
	os.Exit(initMain())
}

// setupError carries the status kind a failed step reports.
type setupError struct {
	kind string
	err  error
}

func (e *setupError) Error() string { return e.err.Error() }

func initMain() int {
	cfgFile := os.NewFile(3, "config")
	statusFile := os.NewFile(4, "status")
	if cfgFile == nil || statusFile == nil {
		fmt.Fprintln(os.Stderr, "imgtool: the container init must be started by imgtool")
		return 125
	}
	// The forwarded signals are caught by a goroutine of their own while
	// this one reads the config and sets up the mounts: os/signal enables
	// each signal in a round trip to a thread it starts first, about half
	// a millisecond. Setup needs no handler (the caller forwards nothing
	// before the command starts); the command starts only once they are
	// in place, since PID 1 drops the signals it has no handler for.
	sigs := make(chan os.Signal, 16)
	caught := make(chan struct{})
	go func() {
		signal.Notify(sigs, forwarded...)
		close(caught)
	}()
	var cfg config
	// Blocks until the parent has written the id maps.
	msg, err := receive(cfgFile, 16<<20)
	if err == nil {
		err = cfg.decode(msg)
	}
	if err != nil {
		report(statusFile, status{Kind: "setup", Msg: "read config: " + err.Error()})
		return 125
	}
	cfgFile.Close()
	if cfg.Reexec {
		err := reexec(&cfg)
		report(statusFile, status{Kind: "setup", Msg: "re-execute the init after mapping ids: " + err.Error()})
		return 125
	}
	m, err := setupMounts(&cfg)
	if err != nil {
		kind := "setup"
		var se *setupError
		if errors.As(err, &se) {
			kind = se.kind
		}
		report(statusFile, status{Kind: kind, Msg: err.Error()})
		return 125
	}
	<-caught
	pid, st := startCommand(&cfg)
	if st.Kind != "ok" {
		report(statusFile, st)
		m.cleanup()
		if st.Code != 0 {
			return st.Code
		}
		return 125
	}
	send(statusFile, st)
	code := supervise(pid, sigs)
	// Nothing of the container may outlive the report: kill and reap
	// what the command left behind, and undo the Writable mounts, so the
	// parent can return on the report while the kernel tears the
	// namespaces down after our exit.
	killAll()
	m.cleanup()
	report(statusFile, status{Kind: "exit", Code: code})
	return code
}

// send writes one status message; report writes the last one.
func send(f *os.File, st status) { _ = st.encode().send(f) }

func report(f *os.File, st status) {
	send(f, st)
	f.Close()
}

// killAll kills every process left in the pid namespace (PID 1 itself is
// spared by kill(-1)) and reaps them; orphans are re-parented to us
// before their parents can be reaped, so ECHILD means none is left. The
// loop ends: each round reaps one child, and the dead cannot fork.
func killAll() {
	for {
		_ = unix.Kill(-1, unix.SIGKILL)
		var ws unix.WaitStatus
		_, err := unix.Wait4(-1, &ws, 0, nil)
		if err != nil && err != unix.EINTR {
			return
		}
	}
}

// forwarded are the signals passed on to the command. SIGURG is the Go
// runtime's own and SIGCHLD is the init's business.
var forwarded = []os.Signal{
	unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2,
	unix.SIGWINCH, unix.SIGCONT, unix.SIGALRM, unix.SIGPIPE,
}

// supervise forwards signals to the command and reaps every process that
// ends in the namespace (orphans are re-parented to us) until the command
// itself exits; its status becomes ours.
func supervise(pid int, sigs <-chan os.Signal) int {
	go func() {
		for sig := range sigs {
			_ = unix.Kill(pid, sig.(syscall.Signal))
		}
	}()
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// ECHILD: nothing left to wait for, which cannot happen
			// before the command is reaped; report it as a failure.
			return 125
		}
		if got != pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// reexec starts the init again, now that its uid is mapped, so that the
// kernel grants it the namespace's capabilities (an exec by an unmapped
// uid drops them all). The config goes to the new image on descriptor 3.
func reexec(cfg *config) error {
	cfg.Reexec = false
	fd, err := unix.MemfdCreate("imgtool-runner-config", 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "config")
	if err := cfg.encode().send(f); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if fd != 3 {
		if err := unix.Dup3(fd, 3, 0); err != nil {
			return err
		}
	}
	return unix.Exec("/proc/self/exe", []string{initArg0}, []string{})
}
