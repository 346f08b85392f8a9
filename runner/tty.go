package runner

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// A -t run's pseudo-terminal comes from the container's own devpts
// instance, so ttyname() inside names a device that exists there. The
// init opens it and hands the master back over a socket (as runc's
// --console-socket does); the parent relays it to the caller's stdio.

// winsize is the caller's terminal size, applied before the command starts.
type winsize struct{ Rows, Cols uint16 }

// terminal is the parent's side of a -t run.
type terminal struct {
	sock    *os.File // receives the master
	master  *os.File
	stdio   Stdio
	host    *os.File // the caller's stdin when it is a terminal
	restore *term.State
	winch   chan os.Signal
	outDone chan struct{}
}

// newTerminal makes the socket pair; the second file goes to the init.
func newTerminal(stdio Stdio) (*terminal, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console socket: %w", err)
	}
	t := &terminal{sock: os.NewFile(uintptr(fds[0]), "console"), stdio: stdio, outDone: make(chan struct{})}
	if f, ok := stdio.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		t.host = f
	}
	return t, os.NewFile(uintptr(fds[1]), "console-init"), nil
}

func (t *terminal) size() *winsize {
	if t.host == nil {
		return nil
	}
	w, err := pty.GetsizeFull(t.host)
	if err != nil {
		return nil
	}
	return &winsize{Rows: w.Rows, Cols: w.Cols}
}

// receive takes the master from the init and starts relaying.
func (t *terminal) receive() error {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(t.sock.Fd()), buf, oob, 0)
	if err != nil {
		return fmt.Errorf("receive the terminal: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return fmt.Errorf("receive the terminal: no descriptor (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return fmt.Errorf("receive the terminal: %v", err)
	}
	t.master = os.NewFile(uintptr(fds[0]), "ptmx")
	t.attach()
	return nil
}

func (t *terminal) attach() {
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
	if t.master == nil {
		return
	}
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
	if t.master != nil {
		t.master.Close()
	}
	t.sock.Close()
}

// openConsole runs in the init after the pivot: it opens a terminal of
// the container's devpts, sizes it, sends the master to the parent on
// sock and returns the slave for the command's stdio.
func openConsole(sock *os.File, size *winsize) (*os.File, error) {
	master, slave, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open a terminal: %w", err)
	}
	defer master.Close()
	if size != nil {
		_ = pty.Setsize(master, &pty.Winsize{Rows: size.Rows, Cols: size.Cols})
	}
	rights := unix.UnixRights(int(master.Fd()))
	if err := unix.Sendmsg(int(sock.Fd()), []byte{0}, rights, nil, 0); err != nil {
		slave.Close()
		return nil, fmt.Errorf("send the terminal: %w", err)
	}
	return slave, nil
}
