package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// later is a collection clock two hours ahead, so that everything the
// test wrote is past a one-hour grace period.
func later() time.Time { return time.Now().Add(2 * time.Hour) }

func runGC(t *testing.T, drv storagedriver.StorageDriver, opts GCOptions) GCReport {
	t.Helper()
	if opts.now == nil {
		opts.now = later
	}
	if opts.Grace == 0 {
		opts.Grace = time.Hour
	}
	rep, err := New(drv, Options{}).GC(context.Background(), opts)
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	return rep
}

// pullable checks that manifest ref of name and everything it names are
// served.
func (c *client) pullable(name, ref string) {
	c.t.Helper()
	w := c.do("GET", "/v2/"+name+"/manifests/"+ref, nil)
	c.want(w, http.StatusOK, "")
	var m manifestDoc
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		c.t.Fatal(err)
	}
	for _, d := range m.Manifests {
		c.pullable(name, d.Digest.String())
	}
	for _, d := range m.references() {
		if len(m.Manifests) == 0 {
			c.want(c.do("GET", "/v2/"+name+"/blobs/"+d.String(), nil), http.StatusOK, "")
		}
	}
}

func (c *client) gone(name, ref string) {
	c.t.Helper()
	c.want(c.do("GET", "/v2/"+name+"/manifests/"+ref, nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
}

func (c *client) pushIndex(name, tag string, children ...digest.Digest) digest.Digest {
	c.t.Helper()
	idx := ocispec.Index{Versioned: specsVersioned, MediaType: ocispec.MediaTypeImageIndex}
	for _, d := range children {
		w := c.do("HEAD", "/v2/"+name+"/manifests/"+d.String(), nil)
		c.want(w, http.StatusOK, "")
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: w.Result().ContentLength})
	}
	raw, _ := json.Marshal(idx)
	w := c.do("PUT", "/v2/"+name+"/manifests/"+tag, raw, "Content-Type", ocispec.MediaTypeImageIndex)
	c.want(w, http.StatusCreated, "")
	return digest.Digest(w.Header().Get("Docker-Content-Digest"))
}

func TestGCTaggedKeptUntaggedDeleted(t *testing.T) {
	drv := inmemory.New()
	c := newClient(t, drv, Options{})
	c.pushImage("team/app", "v1", nil, "")
	old, _ := c.pushImage("team/app", "v2", nil, "")
	c.want(c.do("DELETE", "/v2/team/app/manifests/v2", nil), http.StatusAccepted, "")
	oldLayer := digest.FromBytes([]byte("layer of team/appv2"))

	// Without --delete-untagged an untagged manifest is kept, and so is
	// everything it names.
	rep := runGC(t, drv, GCOptions{})
	if rep.Manifests != 0 || rep.Blobs != 0 || rep.Repositories != 1 {
		t.Fatalf("report %+v; want nothing deleted", rep)
	}
	c.pullable("team/app", old.String())

	rep = runGC(t, drv, GCOptions{DeleteUntagged: true})
	// The untagged manifest, its content and its own layer (with the
	// link) go; the config it shares with v1 stays.
	if rep.Manifests != 1 || rep.Blobs != 2 || rep.Links != 1 {
		t.Fatalf("report %+v; want 1 manifest, 2 blobs (manifest and layer), 1 link", rep)
	}
	c.gone("team/app", old.String())
	c.want(c.do("HEAD", "/v2/team/app/blobs/"+oldLayer.String(), nil), http.StatusNotFound, "")
	c.pullable("team/app", "v1")
	if rep := runGC(t, drv, GCOptions{DeleteUntagged: true}); rep.Manifests+rep.Blobs+rep.Links != 0 {
		t.Fatalf("second run deleted %+v; want nothing", rep)
	}
}

func TestGCIndexKeepsChildren(t *testing.T) {
	drv := inmemory.New()
	c := newClient(t, drv, Options{})
	a, _ := c.pushImage("multi", "amd64-tmp", nil, "")
	b, _ := c.pushImage("multi", "arm64-tmp", nil, "")
	for _, tag := range []string{"amd64-tmp", "arm64-tmp"} {
		c.want(c.do("DELETE", "/v2/multi/manifests/"+tag, nil), http.StatusAccepted, "")
	}
	idx := c.pushIndex("multi", "latest", a, b)
	if rep := runGC(t, drv, GCOptions{DeleteUntagged: true}); rep.Manifests != 0 || rep.Blobs != 0 {
		t.Fatalf("report %+v; want the index's children kept", rep)
	}
	c.pullable("multi", "latest")

	c.want(c.do("DELETE", "/v2/multi/manifests/latest", nil), http.StatusAccepted, "")
	rep := runGC(t, drv, GCOptions{DeleteUntagged: true})
	// index + 2 children; blobs: 3 manifests, 2 layers, 1 shared config.
	if rep.Manifests != 3 || rep.Blobs != 6 {
		t.Fatalf("report %+v; want 3 manifests and 6 blobs", rep)
	}
	for _, d := range []digest.Digest{idx, a, b} {
		c.gone("multi", d.String())
	}
}

func TestGCReferrersGoWithTheirSubject(t *testing.T) {
	drv := inmemory.New()
	c := newClient(t, drv, Options{})
	subject, raw := c.pushImage("signed", "v1", nil, "")
	desc := &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subject, Size: int64(len(raw))}
	sig, sigRaw := c.pushImage("signed", "sig-tmp", desc, "application/example.sig")
	c.want(c.do("DELETE", "/v2/signed/manifests/sig-tmp", nil), http.StatusAccepted, "")
	// A referrer of the (untagged) signature: kept through the chain.
	sigDesc := &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: sig, Size: int64(len(sigRaw))}
	att, _ := c.pushImage("signed", "att-tmp", sigDesc, "application/example.att")
	c.want(c.do("DELETE", "/v2/signed/manifests/att-tmp", nil), http.StatusAccepted, "")

	if rep := runGC(t, drv, GCOptions{DeleteUntagged: true}); rep.Manifests != 0 {
		t.Fatalf("report %+v; want the referrers of a tagged subject kept", rep)
	}
	c.pullable("signed", sig.String())
	c.pullable("signed", att.String())

	c.want(c.do("DELETE", "/v2/signed/manifests/v1", nil), http.StatusAccepted, "")
	if rep := runGC(t, drv, GCOptions{DeleteUntagged: true}); rep.Manifests != 3 {
		t.Fatalf("report %+v; want subject, signature and attestation deleted", rep)
	}
	for _, d := range []digest.Digest{subject, sig, att} {
		c.gone("signed", d.String())
		w := c.do("GET", "/v2/signed/referrers/"+d.String(), nil)
		c.want(w, http.StatusOK, "")
		if strings.Contains(w.Body.String(), "sha256:") {
			t.Fatalf("referrers of %s still listed: %s", d, w.Body)
		}
	}
}

func TestGCGracePeriod(t *testing.T) {
	drv := inmemory.New()
	c := newClient(t, drv, Options{})
	orphan := c.pushBlob("up", []byte("uploaded, manifest not yet pushed"))
	c.pushImage("up", "v1", nil, "")
	c.want(c.do("DELETE", "/v2/up/manifests/v1", nil), http.StatusAccepted, "")
	// Everything is younger than the grace period: nothing goes.
	rep := runGC(t, drv, GCOptions{DeleteUntagged: true, now: time.Now})
	if rep.Manifests != 0 || rep.Blobs != 0 {
		t.Fatalf("report %+v; want everything kept within the grace period", rep)
	}
	c.want(c.do("HEAD", "/v2/up/blobs/"+orphan.String(), nil), http.StatusOK, "")

	rep = runGC(t, drv, GCOptions{DeleteUntagged: true})
	if rep.Manifests != 1 || rep.Blobs != 4 || rep.Links != 3 {
		t.Fatalf("report %+v; want 1 manifest, 4 blobs, 3 links", rep)
	}
	c.want(c.do("HEAD", "/v2/up/blobs/"+orphan.String(), nil), http.StatusNotFound, "")
	if _, err := drv.Stat(context.Background(), layerLinkPath("up", orphan)); !isNotFound(err) {
		t.Fatalf("link of a collected blob: %v", err)
	}
}

// files lists every path and content under the layout.
func files(t *testing.T, drv storagedriver.StorageDriver) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	err := drv.Walk(ctx, layoutRoot, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			raw, err := drv.GetContent(ctx, fi.Path())
			if err != nil {
				return err
			}
			out = append(out, fi.Path()+"="+string(raw))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestGCDryRunChangesNothing(t *testing.T) {
	drv := inmemory.New()
	c := newClient(t, drv, Options{})
	c.pushImage("dry", "v1", nil, "")
	c.pushImage("dry", "v2", nil, "")
	c.want(c.do("DELETE", "/v2/dry/manifests/v2", nil), http.StatusAccepted, "")
	c.pushBlob("dry", []byte("orphan"))
	c.want(c.do("POST", "/v2/dry/blobs/uploads/", nil), http.StatusAccepted, "")
	before := files(t, drv)
	opts := GCOptions{DeleteUntagged: true, UploadTTL: time.Nanosecond}
	opts.DryRun = true
	dry := runGC(t, drv, opts)
	if after := files(t, drv); strings.Join(before, "\n") != strings.Join(after, "\n") {
		t.Fatalf("dry run changed storage:\nbefore %q\nafter  %q", before, after)
	}
	opts.DryRun = false
	real := runGC(t, drv, opts)
	dry.DryRun, dry.Duration, real.Duration = false, 0, 0
	if dry != real || real.Blobs != 3 || real.Uploads != 1 {
		t.Fatalf("dry run reported %+v, the real run %+v; want equal, 3 blobs, 1 upload", dry, real)
	}
}

func TestGCRejectsNegativeDurations(t *testing.T) {
	if _, err := GC(context.Background(), inmemory.New(), GCOptions{Grace: -time.Second}); err == nil {
		t.Fatal("negative grace accepted")
	}
}

func TestKeepRules(t *testing.T) {
	cutoff := time.Now()
	old, fresh := cutoff.Add(-time.Hour), cutoff.Add(time.Second)
	d := func(s string) digest.Digest { return digest.FromString(s) }
	desc := func(s string) ocispec.Descriptor { return ocispec.Descriptor{Digest: d(s)} }
	image := &manifestDoc{Config: &ocispec.Descriptor{Digest: d("cfg")}}
	index := func(children ...string) *manifestDoc {
		m := &manifestDoc{}
		for _, c := range children {
			m.Manifests = append(m.Manifests, desc(c))
		}
		return m
	}
	referrer := func(subject string) *manifestDoc {
		s := desc(subject)
		return &manifestDoc{Config: &ocispec.Descriptor{Digest: d("cfg")}, Subject: &s}
	}
	tests := []struct {
		name string
		docs map[string]*manifestDoc // revision -> content (nil: unreadable)
		mod  map[string]time.Time    // default old
		tags []string
		// referrersIndex lists "subject>referrer" entries of the index only.
		referrersIndex []string
		keep           []string
	}{
		{"tagged", map[string]*manifestDoc{"a": image, "b": image}, nil, []string{"a"}, nil, []string{"a"}},
		{"fresh untagged", map[string]*manifestDoc{"a": image, "b": image}, map[string]time.Time{"b": fresh}, nil, nil, []string{"b"}},
		{"children of a tagged index", map[string]*manifestDoc{"i": index("x", "y"), "x": image, "y": image, "z": image},
			nil, []string{"i"}, nil, []string{"i", "x", "y"}},
		{"nested index", map[string]*manifestDoc{"i": index("j"), "j": index("x"), "x": image}, nil, []string{"i"}, nil, []string{"i", "j", "x"}},
		{"children of an untagged index go with it", map[string]*manifestDoc{"i": index("x"), "x": image}, nil, nil, nil, nil},
		{"referrer chain of a tagged subject", map[string]*manifestDoc{"s": image, "sig": referrer("s"), "att": referrer("sig")},
			nil, []string{"s"}, nil, []string{"s", "sig", "att"}},
		{"referrer of an untagged subject", map[string]*manifestDoc{"s": image, "sig": referrer("s")}, nil, nil, nil, nil},
		{"referrer of a subject never pushed", map[string]*manifestDoc{"sig": referrer("absent")}, nil, nil, nil, nil},
		{"referrer known only from the index", map[string]*manifestDoc{"s": image, "sig": image},
			nil, []string{"s"}, []string{"s>sig"}, []string{"s", "sig"}},
		{"unreadable content is kept", map[string]*manifestDoc{"a": nil}, nil, nil, nil, []string{"a"}},
		{"tag of a missing revision", map[string]*manifestDoc{"a": image}, nil, []string{"gone"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepoState()
			docs := map[digest.Digest]*manifestDoc{}
			for name, doc := range tt.docs {
				r.revisions[d(name)] = old
				if m, ok := tt.mod[name]; ok {
					r.revisions[d(name)] = m
				}
				docs[d(name)] = doc
			}
			for i, tag := range tt.tags {
				r.tags[fmt.Sprint("t", i)] = d(tag)
			}
			for _, e := range tt.referrersIndex {
				s, ref, _ := strings.Cut(e, ">")
				r.referrers[d(s)] = append(r.referrers[d(s)], d(ref))
			}
			kept := r.keep(docs, true, cutoff, nil)
			want := map[digest.Digest]bool{}
			for _, k := range tt.keep {
				want[d(k)] = true
			}
			for name := range tt.docs {
				if kept[d(name)] != want[d(name)] {
					t.Errorf("%s: kept %v, want %v", name, kept[d(name)], want[d(name)])
				}
			}
			if all := r.keep(docs, false, cutoff, nil); len(all) != len(tt.docs) {
				t.Errorf("without delete-untagged kept %d of %d", len(all), len(tt.docs))
			}
		})
	}
}

// BenchmarkGC measures a collection with nothing to delete (the steady
// state) over a filesystem registry of 200 images, 600 blobs.
func BenchmarkGC(b *testing.B) {
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: b.TempDir(), MaxThreads: 50})
	c := newClient(b, drv, Options{})
	for i := range 200 {
		c.pushImage(fmt.Sprintf("bench/app%d", i%10), fmt.Sprint("v", i), nil, "")
	}
	ctx := context.Background()
	for b.Loop() {
		rep, err := GC(ctx, drv, GCOptions{DeleteUntagged: true, Grace: time.Hour})
		if err != nil || rep.Blobs != 0 {
			b.Fatalf("%+v, %v", rep, err)
		}
	}
}
