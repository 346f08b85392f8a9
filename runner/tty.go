package runner

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"
)

// terminal is the pseudo-terminal of a -t run, seen from the parent.
type terminal struct {
	master, slave *os.File
	stdio         Stdio
	host          *os.File // the caller's stdin when it is a terminal
	restore       *term.State
	winch         chan os.Signal
	outDone       chan struct{}
}

func openTerminal(stdio Stdio) (*terminal, error) {
	master, slave, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("allocate a pseudo-terminal: %w", err)
	}
	t := &terminal{master: master, slave: slave, stdio: stdio, outDone: make(chan struct{})}
	if f, ok := stdio.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		t.host = f
		_ = pty.InheritSize(f, master)
	}
	return t, nil
}

// attach runs once the init holds the slave: the parent's copy is closed
// so that reading the master ends when the container's last holder exits.
func (t *terminal) attach() {
	t.slave.Close()
	if t.host != nil {
		if st, err := term.MakeRaw(int(t.host.Fd())); err == nil {
			t.restore = st
		}
		t.winch = make(chan os.Signal, 1)
		signal.Notify(t.winch, syscall.SIGWINCH)
		go func() {
			for range t.winch {
				_ = pty.InheritSize(t.host, t.master)
			}
		}()
	}
	if t.stdio.Stdin != nil {
		go func() { _, _ = io.Copy(t.master, t.stdio.Stdin) }()
	}
	out := t.stdio.Stdout
	if out == nil {
		out = io.Discard
	}
	go func() {
		// Ends with EIO once every slave descriptor is closed.
		_, _ = io.Copy(out, t.master)
		close(t.outDone)
	}()
}

// drain waits for the container's last output to reach the caller.
func (t *terminal) drain() {
	select {
	case <-t.outDone:
	case <-time.After(2 * time.Second):
	}
}

func (t *terminal) close() {
	if t.winch != nil {
		signal.Stop(t.winch)
		close(t.winch)
		t.winch = nil
	}
	if t.restore != nil {
		_ = term.Restore(int(t.host.Fd()), t.restore)
		t.restore = nil
	}
	t.master.Close()
	t.slave.Close()
}
