package main_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRegistryKill9MidPatch kills `imgtool registry serve` with SIGKILL
// while PATCH requests are half way through sending their bodies, then
// resumes each upload on a restarted server from the offset it reports.
// That offset may lag what was sent (bytes in flight are lost) but never
// exceeds it, and never falls below what had reached the disk; the
// digest of the finished blob proves the bytes below it are exactly the
// content's prefix.
func TestRegistryKill9MidPatch(t *testing.T) {
	root := t.TempDir()
	srv := startRegistry(t, root, "--access-log=false")
	// A finished sha512 blob, so that the storage check covers sha512.
	whole := randomContent(t, 100<<10)
	d := contentDigest(t, "sha512", whole)
	resp, err := http.Post("http://"+srv.addr+"/v2/kill/cut512/blobs/uploads/?digest="+d, "application/octet-stream", bytes.NewReader(whole))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push sha512 blob: %s", resp.Status)
	}

	cuts := []*cutUpload{
		{name: "first chunk, chunked body", repo: "kill/cut", alg: "sha256"},
		{name: "second chunk, declared length", repo: "kill/cut2", alg: "sha256", before: 100000, declare: true},
		{name: "sha512 session", repo: "kill/cut512", alg: "sha512", declare: true},
	}
	for _, u := range cuts {
		u.start(t, srv.addr, root)
	}
	for _, u := range cuts {
		u.waitStored(t)
	}
	srv.cmd.Process.Kill()
	srv.cmd.Wait()
	for _, u := range cuts {
		u.pw.CloseWithError(errors.New("client stopped sending"))
		select {
		case err := <-u.done:
			if err == nil {
				t.Fatalf("%s: the PATCH was not cut off by the kill", u.name)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the PATCH did not end after the kill", u.name)
		}
	}
	if got := checkBlobsVerified(t, root); got["sha512"] == 0 {
		t.Fatalf("no sha512 blob checked: %v", got)
	}

	srv2 := startRegistry(t, root, "--access-log=false")
	for _, u := range cuts {
		u.resume(t, srv.addr, srv2.addr)
	}
	if got := checkBlobsVerified(t, root); got["sha512"] < 2 || got["sha256"] < 2 {
		t.Fatalf("blobs checked per algorithm: %v", got)
	}
}

// cutUpload is an upload session whose PATCH the server's kill cuts off.
type cutUpload struct {
	name, repo string
	alg        string // the session's digest algorithm
	before     int    // bytes a PATCH sent in full before the cut one
	declare    bool   // the cut PATCH declares its Content-Length (else it is chunked)

	content []byte
	loc     string
	data    string // the session's data file in the registry's storage
	sent    int    // bytes handed to the client before the kill
	stored  int64  // bytes seen in the data file before the kill
	pw      *io.PipeWriter
	done    chan error // the cut PATCH's outcome: nil if it was answered
}

// cutFeed is how much of the cut PATCH's body is sent before the kill.
const cutFeed = 256 << 10

// start opens the session, sends the PATCH before the cut one, then
// starts the cut PATCH and feeds it cutFeed bytes of its body.
func (u *cutUpload) start(t *testing.T, addr, root string) {
	t.Helper()
	u.content = randomContent(t, 1<<20)
	resp, err := http.Post("http://"+addr+"/v2/"+u.repo+"/blobs/uploads/?digest-algorithm="+u.alg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("%s: start upload: %s", u.name, resp.Status)
	}
	u.loc = "http://" + addr + resp.Header.Get("Location")
	u.data = uploadDataFile(t, root, u.loc[strings.LastIndex(u.loc, "/")+1:])
	if u.before > 0 {
		patch(t, addr, u.loc, u.content[:u.before], fmt.Sprintf("0-%d", u.before-1), http.StatusAccepted)
	}
	var pr *io.PipeReader
	pr, u.pw = io.Pipe()
	req, err := http.NewRequest(http.MethodPatch, u.loc, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", u.before, len(u.content)-1))
	req.Header.Set("Content-Type", "application/octet-stream")
	if u.declare {
		req.ContentLength = int64(len(u.content) - u.before)
	}
	u.done = make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		u.done <- err
	}()
	// Each Write returns once the client has taken the bytes.
	for off := u.before; off < u.before+cutFeed; off += 16 << 10 {
		if _, err := u.pw.Write(u.content[off : off+16<<10]); err != nil {
			t.Fatalf("%s: feed PATCH body: %v", u.name, err)
		}
	}
	u.sent = u.before + cutFeed
}

// waitStored waits until the server has written part of the cut PATCH's
// body to storage, so that the kill cuts off a transfer in progress.
func (u *cutUpload) waitStored(t *testing.T) {
	t.Helper()
	want := int64(u.before + 64<<10)
	deadline := time.Now().Add(30 * time.Second)
	for {
		fi, err := os.Stat(u.data)
		if err != nil {
			t.Fatal(err)
		}
		if u.stored = fi.Size(); u.stored >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d bytes stored 30s after sending %d; want %d", u.name, fi.Size(), u.sent, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// resume continues the session on the server that replaced the one at
// old from the offset it reports, finishes it and pulls the blob back.
func (u *cutUpload) resume(t *testing.T, old, addr string) {
	t.Helper()
	loc := strings.Replace(u.loc, old, addr, 1)
	resp, err := http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rng := resp.Header.Get("Range")
	end, err := strconv.Atoi(strings.TrimPrefix(rng, "0-"))
	if resp.StatusCode != http.StatusNoContent || !strings.HasPrefix(rng, "0-") || err != nil {
		t.Fatalf("%s: upload status after restart: %s Range %q", u.name, resp.Status, rng)
	}
	off := end + 1
	t.Logf("%s: %d bytes sent, %d seen stored before the kill, resumed at %d", u.name, u.sent, u.stored, off)
	if int64(off) < u.stored || off > u.sent {
		t.Fatalf("%s: resumed at %d after sending %d, of which %d had been stored", u.name, off, u.sent, u.stored)
	}
	patch(t, addr, loc, u.content[off:], fmt.Sprintf("%d-%d", off, len(u.content)-1), http.StatusAccepted)
	d := contentDigest(t, u.alg, u.content)
	req, _ := http.NewRequest(http.MethodPut, loc+"?digest="+d, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("%s: finish resumed upload: %s", u.name, resp.Status)
	}
	blob := loc[:strings.Index(loc, "/blobs/uploads/")] + "/blobs/" + d
	resp, err = http.Get(blob)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: pull %s: %s %v", u.name, d, resp.Status, err)
	}
	if g := contentDigest(t, u.alg, got); g != d || resp.Header.Get("Docker-Content-Digest") != d {
		t.Fatalf("%s: pulled %s (served as %s), want %s", u.name, g, resp.Header.Get("Docker-Content-Digest"), d)
	}
}

// uploadDataFile finds upload id's data file under root.
func uploadDataFile(t *testing.T, root, id string) string {
	t.Helper()
	var found string
	err := filepath.WalkDir(filepath.Join(root, "registry"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(filepath.ToSlash(p), "/_uploads/"+id+"/data") {
			found = p
			return fs.SkipAll
		}
		return err
	})
	if err != nil || found == "" {
		t.Fatalf("data file of upload %s not found: %v", id, err)
	}
	return found
}

func randomContent(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func contentDigest(t *testing.T, alg string, b []byte) string {
	t.Helper()
	h, ok := blobHash(alg)
	if !ok {
		t.Fatalf("no hash for %s", alg)
	}
	h.Write(b)
	return alg + ":" + hex.EncodeToString(h.Sum(nil))
}
