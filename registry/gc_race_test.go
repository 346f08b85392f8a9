package registry

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// pushed is one push that the registry answered with success.
type pushed struct {
	ref    string
	digest v1.Hash
	index  bool
}

// TestGCWhilePushing is the argument of gc.go put to work: pushers push
// images (a layer shared by all, one of their own, sometimes as a
// two-platform index) and orphan blobs, while garbage collection runs in
// a loop with no grace period at all, alternately deleting untagged
// manifests. A push may then fail (its blobs were garbage when the
// collection looked) and is retried; every push that succeeded must pull
// whole, every blob verified, after the last collection.
func TestGCWhilePushing(t *testing.T) {
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: t.TempDir(), MaxThreads: 50})
	srv := httptest.NewServer(New(drv, Options{}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	shared, err := random.Layer(4<<10, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}

	// With no grace period a collection deletes whatever no manifest
	// names yet, so a push whose blobs went between its upload and its
	// manifest fails and is retried; with collections back to back a
	// push can lose that race many times in a row on a loaded machine, so
	// the attempts are generous and each collection is followed by a
	// short pause (a real collection loop waits far longer).
	const pushers, perPusher, attempts, pause = 4, 6, 30, 5 * time.Millisecond
	var (
		mu       sync.Mutex
		done     []pushed
		retries  int
		pushing  sync.WaitGroup
		stop     = make(chan struct{})
		gcTotals GCReport
		gcRuns   int
	)
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for i := 0; i < 100000; i++ { // bounded; stops when the pushers are done
			select {
			case <-stop:
				return
			default:
			}
			rep, err := GC(context.Background(), drv, GCOptions{DeleteUntagged: i%2 == 1})
			if err != nil {
				t.Errorf("gc run %d: %v", i, err)
				return
			}
			gcRuns++
			gcTotals.Manifests += rep.Manifests
			gcTotals.Blobs += rep.Blobs
			select {
			case <-stop:
				return
			case <-time.After(pause):
			}
		}
	}()
	for p := range pushers {
		pushing.Go(func() {
			for i := range perPusher {
				ref := fmt.Sprintf("%s/team%d/app:p%d-%d", host, p%2, p, i)
				var push func() (pushed, error)
				if i%3 == 2 {
					push = func() (pushed, error) { return pushIndex(ref, shared) }
				} else {
					push = func() (pushed, error) { return pushImage(ref, shared) }
				}
				for a := 1; ; a++ {
					got, err := push()
					if err == nil {
						mu.Lock()
						done = append(done, got)
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
	pushing.Wait()
	close(stop)
	<-gcDone
	last, err := GC(context.Background(), drv, GCOptions{DeleteUntagged: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pushes succeeded (%d retried attempts) during %d collections that deleted %d manifests and %d blobs; the last one deleted %d blobs",
		len(done), retries, gcRuns, gcTotals.Manifests, gcTotals.Blobs, last.Blobs)
	if gcRuns < 2 || gcTotals.Blobs == 0 {
		t.Errorf("collections did not overlap the pushes (%d runs, %d blobs deleted)", gcRuns, gcTotals.Blobs)
	}
	for _, p := range done {
		if err := pullWhole(p); err != nil {
			t.Errorf("pull %s after collection: %v", p.ref, err)
		}
	}
}

// pushImage pushes an image of the shared layer, one of its own and an
// orphan blob no manifest names, which the collection should take.
func pushImage(ref string, shared v1.Layer) (pushed, error) {
	img, err := imageWith(shared, "amd64")
	if err != nil {
		return pushed{}, err
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return pushed{}, err
	}
	orphan, err := random.Layer(1<<10, types.OCILayer)
	if err != nil {
		return pushed{}, err
	}
	if err := remote.WriteLayer(r.Context(), orphan); err != nil {
		return pushed{}, err
	}
	if err := remote.Write(r, img); err != nil {
		return pushed{}, err
	}
	d, err := img.Digest()
	return pushed{ref: ref, digest: d}, err
}

// pushIndex pushes a two-image index: its children go first, untagged.
func pushIndex(ref string, shared v1.Layer) (pushed, error) {
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := imageWith(shared, arch)
		if err != nil {
			return pushed{}, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	r, err := name.ParseReference(ref)
	if err != nil {
		return pushed{}, err
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		return pushed{}, err
	}
	d, err := idx.Digest()
	return pushed{ref: ref, digest: d, index: true}, err
}

func imageWith(shared v1.Layer, arch string) (v1.Image, error) {
	own, err := random.Layer(2<<10, types.OCILayer)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), shared, own)
	if err != nil {
		return nil, err
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: arch,
		RootFS: v1.RootFS{Type: "layers", DiffIDs: mustDiffIDs(img)}})
	if err != nil {
		return nil, err
	}
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

func mustDiffIDs(img v1.Image) []v1.Hash {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil // the push then fails, and the test says why
	}
	return cf.RootFS.DiffIDs
}

// pullWhole pulls p by tag, checks the tag still names what was pushed,
// and reads and verifies every manifest and blob.
func pullWhole(p pushed) error {
	r, err := name.ParseReference(p.ref)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	desc, err := remote.Get(r, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	if desc.Digest != p.digest {
		return fmt.Errorf("tag names %s, pushed %s", desc.Digest, p.digest)
	}
	if p.index {
		idx, err := desc.ImageIndex()
		if err != nil {
			return err
		}
		return validate.Index(idx)
	}
	img, err := desc.Image()
	if err != nil {
		return err
	}
	return validate.Image(img)
}
