package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestKilledPullLeavesOnlyVerifiedBlobs kills a pull with SIGKILL while a
// blob is half transferred, then checks the store holds no image, no blob
// that was not verified, and that the next pull fetches only what the
// first did not finish.
func TestKilledPullLeavesOnlyVerifiedBlobs(t *testing.T) {
	var stall atomic.Bool
	var stallDigest atomic.Value
	stall.Store(true)
	started := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	gets := map[string]int{}
	reg := newRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				mu.Lock()
				gets[r.URL.Path]++
				mu.Unlock()
				// Stall the first layer blob after half of it, until the
				// client goes away.
				if stall.Load() && strings.HasSuffix(r.URL.Path, stallDigest.Load().(string)) {
					w.Header().Set("Content-Length", "32768")
					w.WriteHeader(http.StatusOK)
					w.Write(make([]byte, 16384))
					w.(http.Flusher).Flush()
					once.Do(func() { close(started) })
					<-r.Context().Done()
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	img := pushRandom(t, reg+"/k/app:1")
	layers, _ := img.Layers()
	d, _ := layers[1].Digest()
	stallDigest.Store(d.String())

	c := newCLI(t)
	cmd := exec.Command(binary, "--root", c.root, "--progress", "quiet", "pull", reg+"/k/app:1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("pull never reached the stalled blob")
	}
	time.Sleep(200 * time.Millisecond) // let the other blobs finish
	cmd.Process.Kill()
	cmd.Wait()

	if n := len(c.images()); n != 0 {
		t.Fatalf("killed pull left %d images", n)
	}
	blobs := verifyBlobs(t, filepath.Join(c.root, "store"))
	if blobs[d.Hex] {
		t.Fatal("the half-transferred blob is under its final name")
	}
	mu.Lock()
	for k := range gets {
		delete(gets, k)
	}
	mu.Unlock()
	stall.Store(false)
	c.ok("pull", reg+"/k/app:1")
	mu.Lock()
	defer mu.Unlock()
	for path, n := range gets {
		hex := path[strings.LastIndex(path, ":")+1:]
		if blobs[hex] && n > 0 {
			t.Errorf("second pull fetched %s again though the first had verified it", path)
		}
	}
	if gets["/v2/k/app/blobs/"+d.String()] != 1 {
		t.Errorf("second pull did not fetch the unfinished blob: %v", gets)
	}
	if out := c.ok("prune"); !strings.Contains(out, "Deleted 0 blobs") {
		t.Errorf("prune after the complete pull: %s", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.root, "store", ".imgtool", "ingest")); len(entries) != 0 {
		t.Errorf("prune left %d abandoned ingests", len(entries))
	}
}

// verifyBlobs hashes every blob of a layout and returns the set of them.
func verifyBlobs(t *testing.T, layout string) map[string]bool {
	t.Helper()
	dir := filepath.Join(layout, "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		if got := hex.EncodeToString(h.Sum(nil)); got != e.Name() {
			t.Errorf("blob %s holds content hashing to %s", e.Name(), got)
		}
		out[e.Name()] = true
	}
	if len(out) == 0 {
		t.Log("no blob was complete when the pull was killed")
	}
	return out
}
