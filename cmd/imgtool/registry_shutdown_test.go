package main_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRegistryServeShutdownCutsOffStalledUpload sends SIGTERM while a
// PATCH body stalls past --grace: the process still exits, the PATCH it
// cut off gets its one access-log line, and after a restart on the same
// root the upload continues after the bytes that arrived.
func TestRegistryServeShutdownCutsOffStalledUpload(t *testing.T) {
	root := t.TempDir()
	srv := startRegistry(t, root, "--grace", "1s")
	loc := postUpload(t, srv.addr, "cutoff/app")
	data := bytes.Repeat([]byte("0123456789"), 8000)
	const arrived = 50000 // more than one of the server's 32 KiB body pieces, not a multiple
	body := &stallingBody{data: data[:arrived], sent: make(chan struct{}), release: make(chan struct{})}
	defer body.abandon()
	req, _ := http.NewRequest(http.MethodPatch, loc, body)
	req.ContentLength = -1 // chunked, without the transport's probe read
	req.Header.Set("Content-Type", "application/octet-stream")
	client := &http.Client{Transport: &http.Transport{}}
	patched := make(chan struct{})
	go func() {
		defer close(patched)
		if resp, err := client.Do(req); err == nil { // the server is cut off: an error, or an error status
			resp.Body.Close()
		}
	}()
	select {
	case <-body.sent:
	case <-time.After(20 * time.Second):
		t.Fatal("the client did not send the first part of the PATCH body within 20s")
	}
	// The bytes may sit in the listen backlog until the server accepts the
	// connection; the signal must come once the handler reads them.
	logged := []string{"POST /v2/cutoff/app/blobs/uploads/"}
	for !strings.Contains(metrics(t, srv.addr), "\nimgtool_registry_upload_requests_in_flight 1\n") {
		logged = append(logged, "GET /metrics")
		if len(logged) > 200 {
			t.Fatal("the PATCH was not in flight 10s after its first bytes were sent")
		}
		time.Sleep(50 * time.Millisecond)
	}
	logged = append(logged, "GET /metrics")

	srv.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- srv.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, srv.stderr())
		}
	case <-time.After(20 * time.Second):
		srv.cmd.Process.Kill()
		<-exited
		t.Fatalf("registry serve still running 20s after SIGTERM with a stalled PATCH\n%s", srv.stderr())
	}
	body.abandon()
	<-patched
	path := strings.TrimPrefix(loc, "http://"+srv.addr)
	wantRequests(t, srv.stderr(), append(logged, "PATCH "+path)...)

	srv2 := startRegistry(t, root)
	loc2 := strings.Replace(loc, srv.addr, srv2.addr, 1)
	resp, err := http.Get(loc2)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Range"); resp.StatusCode != http.StatusNoContent || got != fmt.Sprintf("0-%d", arrived-1) {
		t.Fatalf("upload status after restart: %s, Range %q; want 204, 0-%d", resp.Status, got, arrived-1)
	}
	patch(t, srv2.addr, loc2, data[arrived:], fmt.Sprintf("%d-%d", arrived, len(data)-1), http.StatusAccepted)
	sum := sha256.Sum256(data)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	req, _ = http.NewRequest(http.MethodPut, loc2+"?digest="+digest, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("finish the resumed upload as %s: %s", digest, resp.Status)
	}
	resp, err = http.Get("http://" + srv2.addr + "/v2/cutoff/app/blobs/" + digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob after the resumed upload: %v, %d bytes, equal %v", err, len(got), bytes.Equal(got, data))
	}
	srv2.stop(t)
	wantRequests(t, srv2.stderr(), "GET "+path, "PATCH "+path, "PUT "+path+"?digest="+digest, "GET /v2/cutoff/app/blobs/"+digest)
}

func metrics(t *testing.T, addr string) string {
	t.Helper()
	_, body := get(t, http.MethodGet, "http://"+addr+"/metrics", "")
	return body
}

// stallingBody yields data, then blocks until abandoned: the transport
// asks for more only after it has written and flushed what it had, so
// sent is closed once data is on the wire.
type stallingBody struct {
	data    []byte
	sent    chan struct{}
	release chan struct{}
	once    sync.Once
	gone    sync.Once
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if len(b.data) > 0 {
		n := copy(p, b.data)
		b.data = b.data[n:]
		return n, nil
	}
	b.once.Do(func() { close(b.sent) })
	<-b.release
	return 0, errors.New("body abandoned")
}

func (b *stallingBody) abandon() { b.gone.Do(func() { close(b.release) }) }

// wantRequests checks that log has exactly one access-log line for each
// "METHOD path" of want, in that order, and no other.
func wantRequests(t *testing.T, log string, want ...string) {
	t.Helper()
	var got []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, " msg=request ") {
			continue
		}
		var method, path string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "method="); ok {
				method = v
			}
			if v, ok := strings.CutPrefix(f, "path="); ok {
				path = v
				if u, err := strconv.Unquote(v); err == nil { // slog quotes a query's "="
					path = u
				}
			}
		}
		got = append(got, method+" "+path)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("access-log lines for\n%s\nwant one each for\n%s\nlog:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), log)
	}
}
