package registry

import (
	"context"
	"net/http"
	"path"
	"slices"
	"sync"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// walkHookDriver runs before once, right before the first Walk of at:
// a write landing between two parts of a collection's scan.
type walkHookDriver struct {
	storagedriver.StorageDriver
	at     string
	before func()
	once   sync.Once
}

func (h *walkHookDriver) Walk(ctx context.Context, p string, f storagedriver.WalkFn, opts ...func(*storagedriver.WalkOptions)) error {
	if p == h.at && h.before != nil {
		h.once.Do(h.before)
	}
	return h.StorageDriver.Walk(ctx, p, f, opts...)
}

// TestGCKeepsManifestsWrittenDuringFirstScan: a manifest pushed after the
// first scan went past its repository, but before it reached the blob
// store, is seen only by the second scan. The storage's timestamps put
// its writes before the cutoff (here the collection's clock runs ahead;
// on the filesystem driver a file's mtime lags the clock by up to a
// kernel tick, which with no grace period is the same). The collection
// must keep it whole: it was written while the collection ran, so it is
// as good as new, whatever its timestamp. Once the first scan had counted
// its content, config and layer as garbage and the second scan had not
// kept the revision, the collection deleted the content under the
// surviving revision, and an index pushed next named a broken child.
func TestGCKeepsManifestsWrittenDuringFirstScan(t *testing.T) {
	drv := &walkHookDriver{StorageDriver: inmemory.New(), at: path.Join(layoutRoot, "blobs")}
	c := newClient(t, drv, Options{})
	raw, d, _ := c.imageManifest("r")
	drv.before = func() {
		c.want(c.do("PUT", "/v2/r/manifests/"+d.String(), raw, "Content-Type", ocispec.MediaTypeImageManifest),
			http.StatusCreated, "")
	}
	runGC(t, drv, GCOptions{DeleteUntagged: true})
	c.pullable("r", d.String())
	idx := c.pushIndex("r", "v1", d)
	runGC(t, drv, GCOptions{DeleteUntagged: true})
	c.pullable("r", idx.String())
}

// TestSecondPlanKeepsWhatIsNewSinceTheFirst: everything below is older
// than the cutoff by its timestamp; what the second scan sees new, or
// written again, since the first is kept all the same, with what it
// names, while what both scans saw alike is deleted.
func TestSecondPlanKeepsWhatIsNewSinceTheFirst(t *testing.T) {
	cutoff := time.Now()
	old, older := cutoff.Add(-time.Minute), cutoff.Add(-time.Hour)
	d := digest.FromString
	image := func(cfg string) *manifestDoc {
		return &manifestDoc{Config: &ocispec.Descriptor{Digest: d(cfg)}}
	}
	tests := []struct {
		name string
		// change makes the scans differ (s1 first, s2 second).
		change func(s1, s2 *snapshot)
		// deleted is what the second plan deletes of manifest "m" (with
		// content "m" and config "cfg") and blob "orphan".
		revision, content, cfg, orphan bool
	}{
		{"nothing new", func(_, _ *snapshot) {}, true, true, true, true},
		{"revision new", func(s1, _ *snapshot) { delete(s1.repos["r"].revisions, d("m")) }, false, false, false, true},
		{"revision written again", func(_, s2 *snapshot) { s2.repos["r"].revisions[d("m")] = old }, false, false, false, true},
		{"link new", func(_, s2 *snapshot) { s2.repos["r"].links[d("orphan")] = older }, true, true, true, false},
		{"link written again", func(_, s2 *snapshot) { s2.repos["r"].links[d("cfg")] = old }, true, true, false, true},
		{"blob stored again", func(_, s2 *snapshot) { s2.blobs[d("orphan")] = fileState{size: 1, mod: old} }, true, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := func() *snapshot {
				r := newRepoState()
				r.revisions[d("m")] = older
				r.links[d("cfg")] = older
				s := &snapshot{
					repos: map[string]*repoState{"r": r},
					blobs: map[digest.Digest]fileState{},
					docs:  map[digest.Digest]*manifestDoc{d("m"): image("cfg")},
				}
				for _, b := range []string{"m", "cfg", "orphan"} {
					s.blobs[d(b)] = fileState{size: 1, mod: older}
				}
				return s
			}
			s1, s2 := snap(), snap()
			tt.change(s1, s2)
			p := s2.plan(true, cutoff, s1)
			_, content := p.blobs[d("m")]
			_, cfg := p.blobs[d("cfg")]
			_, orphan := p.blobs[d("orphan")]
			got := []bool{len(p.manifests["r"]) == 1, content, cfg, orphan}
			want := []bool{tt.revision, tt.content, tt.cfg, tt.orphan}
			if !slices.Equal(got, want) {
				t.Errorf("deleted [revision content cfg orphan] = %v, want %v", got, want)
			}
		})
	}
	// A repository the first scan did not see at all is new, whole.
	s1 := &snapshot{repos: map[string]*repoState{}, blobs: map[digest.Digest]fileState{d("m"): {size: 1, mod: older}, d("cfg"): {size: 1, mod: older}}}
	r := newRepoState()
	r.revisions[d("m")] = older
	s2 := &snapshot{repos: map[string]*repoState{"r": r}, blobs: s1.blobs, docs: map[digest.Digest]*manifestDoc{d("m"): image("cfg")}}
	if p := s2.plan(true, cutoff, s1); !p.empty() {
		t.Errorf("plan deletes %v and %v of a repository new since the first scan", p.manifests, p.blobs)
	}
	// The first scan's own plan goes by timestamps alone.
	if p := s2.plan(true, cutoff, nil); len(p.manifests["r"]) != 1 || len(p.blobs) != 2 {
		t.Errorf("first plan deletes %v and %v; want the revision, its content and config", p.manifests, p.blobs)
	}
}
