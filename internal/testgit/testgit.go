// Package testgit serves git repositories to tests over git:// on
// 127.0.0.1, as `git daemon --inetd` does behind inetd: one process per
// connection, on a listener of the test's, stopped with the test.
package testgit

import (
	"net"
	"os/exec"
	"testing"
)

// Daemon serves the repositories under dir and returns the git:// URL of
// dir. prepare, when not nil, adjusts each daemon's command before it
// starts (its user, its environment).
func Daemon(t testing.TB, dir string, prepare func(*exec.Cmd)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			f, err := conn.(*net.TCPConn).File()
			conn.Close()
			if err != nil {
				continue
			}
			cmd := exec.Command("git", "daemon", "--inetd", "--export-all", "--base-path="+dir, dir)
			if prepare != nil {
				prepare(cmd)
			}
			cmd.Stdin, cmd.Stdout = f, f
			if cmd.Start() != nil {
				f.Close()
				continue
			}
			go func() { cmd.Wait(); f.Close() }()
		}
	}()
	return "git://" + l.Addr().String()
}
