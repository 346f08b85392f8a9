// Package testgit makes and serves git repositories for tests: Run runs
// git with a fixed identity and date, and Daemon serves repositories over
// git:// on 127.0.0.1, as `git daemon --inetd` does behind inetd: one
// process per connection, on a listener of the test's, stopped with the
// test.
package testgit

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Run runs git in dir with a fixed identity and date, so that test
// repositories have the same commits on every run, and returns its
// trimmed output.
func Run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_AUTHOR_DATE=2021-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2021-01-02T03:04:05Z",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s (the tests need git)", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

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
