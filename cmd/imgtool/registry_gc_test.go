package main_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// blobFiles counts the blobs stored under root's registry.
func blobFiles(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(root, "registry", "imgtool", "v1", "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "data" {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRegistryGC runs `imgtool registry gc` against the data of a running
// `imgtool registry serve`: a dry run reports and changes nothing, the
// real run deletes the untagged image and the orphan blob, and the tagged
// image still pulls whole, as does the deleted one once pushed again.
func TestRegistryGC(t *testing.T) {
	c := newCLI(t)
	srv := startRegistry(t, c.root, "--access-log=false")
	ref := func(tag string) name.Reference {
		r, err := name.ParseReference(srv.addr + "/gc/app:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	keep, _ := random.Image(2048, 2)
	drop, _ := random.Image(2048, 1)
	orphan, _ := random.Layer(1024, types.OCILayer)
	for tag, img := range map[string]v1.Image{"keep": keep, "drop": drop} {
		if err := remote.Write(ref(tag), img); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.WriteLayer(ref("keep").Context(), orphan); err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(ref("drop")); err != nil {
		t.Fatal(err)
	}
	before := blobFiles(t, c.root)

	var dry struct {
		DryRun                                bool
		Manifests, Blobs, Links, Repositories int
		Bytes                                 int64
	}
	out := c.ok("registry", "gc", "--dry-run", "--delete-untagged", "--grace", "0s", "--format", "json")
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatalf("gc --format json: %v\n%s", err, out)
	}
	// The untagged image's manifest, config and layer, and the orphan.
	if !dry.DryRun || dry.Manifests != 1 || dry.Blobs != 4 || dry.Links != 3 || dry.Repositories != 1 || dry.Bytes == 0 {
		t.Fatalf("dry run reported %+v", dry)
	}
	if n := blobFiles(t, c.root); n != before {
		t.Fatalf("dry run changed the blob count from %d to %d", before, n)
	}

	out = c.ok("registry", "gc", "--delete-untagged", "--grace", "0s")
	if !strings.HasPrefix(out, "deleted 1 manifests, 4 blobs (") || !strings.Contains(out, "3 blob links and 0 upload sessions in 1 repositories") {
		t.Fatalf("gc printed %q", out)
	}
	if n := blobFiles(t, c.root); n != before-4 {
		t.Fatalf("%d blobs after gc, want %d", n, before-4)
	}
	pulled, err := remote.Image(ref("keep"))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(pulled); err != nil {
		t.Fatalf("tagged image after gc: %v", err)
	}
	d, _ := drop.Digest()
	if _, err := remote.Image(ref("keep").Context().Digest(d.String())); err == nil {
		t.Fatal("untagged image still served after gc")
	}
	if err := remote.Write(ref("again"), drop); err != nil {
		t.Fatalf("push again after gc: %v", err)
	}
	if pulled, err = remote.Image(ref("again")); err != nil || validate.Image(pulled) != nil {
		t.Fatalf("image pushed again after gc: %v", err)
	}
	// Without a grace period override, everything just written is kept.
	if out := c.ok("registry", "gc", "--delete-untagged"); !strings.HasPrefix(out, "deleted 0 manifests, 0 blobs") {
		t.Fatalf("gc within the grace period printed %q", out)
	}
}

func TestRegistryGCBadInput(t *testing.T) {
	c := newCLI(t)
	c.fail(1, "registry", "gc") // no registry data under the root yet
	if err := os.MkdirAll(filepath.Join(c.root, "registry"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.fail(2, "registry", "gc", "extra")
	c.fail(1, "registry", "gc", "--format", "xml")
	c.fail(1, "registry", "gc", "--grace", "-1h")
	if out := c.ok("registry", "gc", "--dry-run"); !strings.HasPrefix(out, "would delete 0 manifests, 0 blobs") {
		t.Fatalf("gc of an empty registry printed %q", out)
	}
}

// TestRegistryGCWhileServing is the GC-under-push test across processes,
// as operators run it: clients push images (a shared layer and their own)
// and orphan blobs through `imgtool registry serve` while `imgtool
// registry gc --grace 0s --delete-untagged` runs in a loop against the
// same directory; every push that succeeded then pulls whole.
func TestRegistryGCWhileServing(t *testing.T) {
	c := newCLI(t)
	srv := startRegistry(t, c.root, "--access-log=false")
	shared, err := random.Layer(4096, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	const pushers, perPusher, attempts = 3, 4, 10
	var (
		mu      sync.Mutex
		pushed  = map[string]v1.Image{}
		retries int
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	gcDone := make(chan struct{})
	runs, freed := 0, 0
	go func() {
		defer close(gcDone)
		for range 1000 { // bounded; stops when the pushers are done
			select {
			case <-stop:
				return
			default:
			}
			r := c.run(nil, "registry", "gc", "--grace", "0s", "--delete-untagged", "--format", "json")
			var rep struct{ Blobs int }
			if r.code != 0 || r.stderr != "" || json.Unmarshal([]byte(r.stdout), &rep) != nil {
				t.Errorf("registry gc while serving: exit %d\n%s%s", r.code, r.stdout, r.stderr)
				return
			}
			runs++
			freed += rep.Blobs
		}
	}()
	for p := range pushers {
		wg.Go(func() {
			for i := range perPusher {
				ref, _ := name.ParseReference(fmt.Sprintf("%s/serve/app%d:p%d-%d", srv.addr, p%2, p, i))
				img, _ := random.Image(2048, 1)
				img, _ = mutate.AppendLayers(img, shared)
				orphan, _ := random.Layer(1024, types.OCILayer)
				for a := 1; ; a++ {
					err := remote.WriteLayer(ref.Context(), orphan)
					if err == nil {
						err = remote.Write(ref, img)
					}
					if err == nil {
						mu.Lock()
						pushed[ref.String()] = img
						mu.Unlock()
						break
					}
					if a == attempts {
						t.Errorf("push %s failed %d times; last: %v", ref, a, err)
						break
					}
					mu.Lock()
					retries++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-gcDone
	c.ok("registry", "gc", "--grace", "0s", "--delete-untagged")
	t.Logf("%d pushes succeeded (%d retried attempts) while %d gc processes deleted %d blobs", len(pushed), retries, runs, freed)
	if runs < 2 || freed == 0 {
		t.Errorf("gc did not overlap the pushes (%d runs, %d blobs deleted)", runs, freed)
	}
	for r, img := range pushed {
		ref, _ := name.ParseReference(r)
		if err := pullVerified(ref, img); err != nil {
			t.Errorf("pull %s after gc: %v", r, err)
		}
	}
}

// pullVerified pulls ref, checks it is img and verifies every blob.
func pullVerified(ref name.Reference, img v1.Image) error {
	got, err := remote.Image(ref)
	if err != nil {
		return err
	}
	want, _ := img.Digest()
	if d, err := got.Digest(); err != nil || d != want {
		return fmt.Errorf("tag names %v (%v), pushed %s", d, err, want)
	}
	return validate.Image(got)
}
