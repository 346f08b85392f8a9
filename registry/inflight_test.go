package registry

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestServeWaitsForHandlersCutOff: a request whose body stalls past the
// grace period has its connection closed, and serveHTTP returns only
// after its handler has finished what it does once the body fails.
func TestServeWaitsForHandlersCutOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var cleanedUp atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		if _, err := io.Copy(io.Discard, r.Body); err == nil {
			t.Error("the stalled body ended cleanly")
		}
		time.Sleep(300 * time.Millisecond) // clean-up after the cut, as appendBody saving a session
		cleanedUp.Store(true)
	})
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- serveHTTP(ctx, ln, h, nil, 100*time.Millisecond, "test") }()

	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPatch, "http://"+ln.Addr().String()+"/", pr)
	req.ContentLength = -1
	go func() {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if _, err := pw.Write([]byte("some bytes")); err != nil {
		t.Fatal(err)
	}
	<-started
	stop()
	if err := <-served; err != nil {
		t.Fatalf("serveHTTP: %v", err)
	}
	if !cleanedUp.Load() {
		t.Error("serveHTTP returned before the handler cut off had finished")
	}
}

// TestInflightWaitIsBounded: wait gives up on a handler that does not
// return, saying how many are left, and returns once it has.
func TestInflightWaitIsBounded(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	f := &inflight{h: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(started)
		<-release
	})}
	if err := f.wait(time.Minute); err != nil {
		t.Fatalf("wait with nothing running: %v", err)
	}
	done := make(chan struct{})
	go func() {
		f.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
		close(done)
	}()
	<-started
	err := f.wait(50 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "1 requests still running") {
		t.Fatalf("wait on a stuck handler: %v", err)
	}
	close(release)
	if err := f.wait(time.Minute); err != nil {
		t.Fatalf("wait after the handler returned: %v", err)
	}
	<-done
}
