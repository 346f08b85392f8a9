package main_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestInterruptedPull: SIGINT, and a second one, cancel a command of the
// lean imgtool, which exits 130 with a message instead of being killed by
// the signal (its handlers are set while it starts, see interrupt.go).
func TestInterruptedPull(t *testing.T) {
	started := make(chan struct{})
	var once sync.Once
	reg := newRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				once.Do(func() { close(started) })
				<-r.Context().Done()
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	pushRandom(t, reg+"/i/app:1")
	c := newCLI(t)
	cmd := exec.Command(binary, "--root", c.root, "--progress", "quiet", "pull", reg+"/i/app:1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("pull never asked for a blob")
	}
	must(t, cmd.Process.Signal(os.Interrupt))
	must(t, cmd.Process.Signal(os.Interrupt))
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("interrupted pull: %v (%v), want exit status 130\n%s", err, cmd.ProcessState, errb.String())
	}
	if !strings.Contains(errb.String(), "context canceled") {
		t.Errorf("interrupted pull says: %q", errb.String())
	}
}
