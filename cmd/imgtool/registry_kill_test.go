package main_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestRegistrySurvivesKill9 kills `imgtool registry serve` with SIGKILL
// while 32 clients push, restarts it on the same directory, and checks
// every push that completed is intact, no stored blob is partial or
// unverified, interrupted pushes succeed when retried, and an upload
// session cut off by the kill continues where it stopped.
func TestRegistrySurvivesKill9(t *testing.T) {
	root := t.TempDir()
	srv := startRegistry(t, root, "--access-log=false")

	// An upload session started before the kill, to continue after it.
	part := bytes.Repeat([]byte("resumable "), 10000)
	loc := postUpload(t, srv.addr, "kill/resume")
	patch(t, srv.addr, loc, part[:50000], "0-49999", http.StatusAccepted)

	type push struct {
		ref  string
		img  v1.Image
		done bool
	}
	const clients, perClient = 32, 3
	pushes := make([]*push, clients*perClient)
	for i := range pushes {
		img, err := random.Image(256<<10, 2)
		if err != nil {
			t.Fatal(err)
		}
		pushes[i] = &push{ref: fmt.Sprintf("%s/kill/img%d:v1", srv.addr, i), img: img}
	}
	var completed atomic.Int32
	killed := make(chan struct{})
	var kill sync.Once
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for _, p := range pushes[c*perClient : (c+1)*perClient] {
				ref, _ := name.ParseReference(p.ref)
				if remote.Write(ref, p.img) != nil {
					return // the server is gone
				}
				p.done = true
				if completed.Add(1) == clients {
					kill.Do(func() {
						srv.cmd.Process.Kill()
						close(killed)
					})
				}
			}
		})
	}
	wg.Wait()
	kill.Do(func() { srv.cmd.Process.Kill(); close(killed) })
	<-killed
	srv.cmd.Wait()
	n := int(completed.Load())
	if n == len(pushes) {
		t.Fatalf("all %d pushes completed before the kill; the test did not interrupt any", n)
	}
	t.Logf("%d of %d pushes completed before SIGKILL", n, len(pushes))

	checkBlobsVerified(t, root)
	srv2 := startRegistry(t, root, "--access-log=false")
	for _, p := range pushes {
		ref, _ := name.ParseReference(strings.Replace(p.ref, srv.addr, srv2.addr, 1))
		if !p.done {
			if err := remote.Write(ref, p.img); err != nil {
				t.Fatalf("retry push %s after restart: %v", ref, err)
			}
		}
		pullAndVerify(t, ref, p.img)
	}
	// The session from before the kill continues on the new process.
	loc2 := strings.Replace(loc, srv.addr, srv2.addr, 1)
	resp, err := http.Get(loc2)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Range"); resp.StatusCode != http.StatusNoContent || got != "0-49999" {
		t.Fatalf("upload status after restart: %d Range %q", resp.StatusCode, got)
	}
	patch(t, srv2.addr, loc2, part[50000:], fmt.Sprintf("50000-%d", len(part)-1), http.StatusAccepted)
	sum := sha256.Sum256(part)
	req, _ := http.NewRequest(http.MethodPut, loc2+"?digest=sha256:"+hex.EncodeToString(sum[:]), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("finish resumed upload: %v %v", err, resp)
	}
	checkBlobsVerified(t, root)
}

func postUpload(t *testing.T, addr, repo string) string {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %s", resp.Status)
	}
	return "http://" + addr + resp.Header.Get("Location")
}

func patch(t *testing.T, addr, loc string, data []byte, contentRange string, want int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPatch, loc, bytes.NewReader(data))
	req.Header.Set("Content-Range", contentRange)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("PATCH %s: %s, want %d", contentRange, resp.Status, want)
	}
}

// checkBlobsVerified hashes every blob in the registry's storage, under
// whichever digest algorithm directory it is: each must match the digest
// it is stored under. It returns how many blobs each algorithm holds.
func checkBlobsVerified(t *testing.T, root string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	err := filepath.WalkDir(filepath.Join(root, "registry"), func(p string, d fs.DirEntry, err error) error {
		// blobs/<algorithm>/<first two hex>/<hex>/data
		parts := strings.Split(filepath.ToSlash(p), "/")
		n := len(parts)
		if err != nil || d.IsDir() || n < 5 || parts[n-1] != "data" || parts[n-5] != "blobs" {
			return err
		}
		alg, enc := parts[n-4], parts[n-2]
		h, ok := blobHash(alg)
		if !ok || !strings.HasPrefix(enc, parts[n-3]) {
			t.Errorf("%s: not where a verifiable blob is stored", p)
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != enc {
			t.Errorf("blob %s:%s holds content %s", alg, enc, got)
		}
		counts[alg]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) == 0 {
		t.Fatal("no blobs stored")
	}
	return counts
}

// blobHash returns a hash for the digest algorithms the registry verifies.
func blobHash(alg string) (hash.Hash, bool) {
	switch alg {
	case "sha256":
		return sha256.New(), true
	case "sha512":
		return sha512.New(), true
	}
	return nil, false
}

func pullAndVerify(t *testing.T, ref name.Reference, want v1.Image) {
	t.Helper()
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	got, _ := img.Digest()
	if w, _ := want.Digest(); got != w {
		t.Fatalf("%s: digest %s, want %s", ref, got, w)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed() // verifies the digest as it reads
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("pull %s layer: %v", ref, err)
		}
		if err := rc.Close(); err != nil {
			t.Fatalf("pull %s layer: %v", ref, err)
		}
	}
}
