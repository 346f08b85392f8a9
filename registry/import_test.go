package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// countingDriver counts the calls that change storage.
type countingDriver struct {
	storagedriver.StorageDriver
	writes atomic.Int64
}

func (c *countingDriver) PutContent(ctx context.Context, p string, b []byte) error {
	c.writes.Add(1)
	return c.StorageDriver.PutContent(ctx, p, b)
}

func (c *countingDriver) Writer(ctx context.Context, p string, a bool) (storagedriver.FileWriter, error) {
	c.writes.Add(1)
	return c.StorageDriver.Writer(ctx, p, a)
}

func (c *countingDriver) Move(ctx context.Context, a, b string) error {
	c.writes.Add(1)
	return c.StorageDriver.Move(ctx, a, b)
}

func (c *countingDriver) Delete(ctx context.Context, p string) error {
	c.writes.Add(1)
	return c.StorageDriver.Delete(ctx, p)
}

// testBundle builds an OCI archive in memory.
type testBundle struct {
	members []tarMember
	index   ocispec.Index
	noIndex bool
}

type tarMember struct {
	name string
	typ  byte
	data []byte
	link string
}

func (b *testBundle) blob(data []byte) ocispec.Descriptor {
	d := digest.FromBytes(data)
	for _, m := range b.members {
		if m.name == "blobs/sha256/"+d.Encoded() {
			return ocispec.Descriptor{Digest: d, Size: int64(len(data))}
		}
	}
	b.members = append(b.members, tarMember{name: "blobs/sha256/" + d.Encoded(), typ: tar.TypeReg, data: data})
	return ocispec.Descriptor{Digest: d, Size: int64(len(data))}
}

// image adds a one-layer image (the layer shared when layerData repeats)
// and returns its manifest's descriptor.
func (b *testBundle) image(cfgData, layerData string, subject *ocispec.Descriptor) ocispec.Descriptor {
	cfg := b.blob([]byte(cfgData))
	cfg.MediaType = ocispec.MediaTypeImageConfig
	l := b.blob([]byte(layerData))
	l.MediaType = ocispec.MediaTypeImageLayer
	m := ocispec.Manifest{Versioned: specsVersioned, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{l}, Subject: subject}
	if subject != nil {
		m.ArtifactType = "application/example.sig"
	}
	raw, _ := json.Marshal(m)
	d := b.blob(raw)
	d.MediaType = ocispec.MediaTypeImageManifest
	return d
}

func (b *testBundle) indexOf(children ...ocispec.Descriptor) ocispec.Descriptor {
	raw, _ := json.Marshal(ocispec.Index{Versioned: specsVersioned, MediaType: ocispec.MediaTypeImageIndex, Manifests: children})
	d := b.blob(raw)
	d.MediaType = ocispec.MediaTypeImageIndex
	return d
}

func (b *testBundle) name(ref string, d ocispec.Descriptor) {
	d.Annotations = map[string]string{annotationImageName: ref}
	b.index.Manifests = append(b.index.Manifests, d)
}

func (b *testBundle) tar(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	idx, _ := json.Marshal(b.index)
	all := append([]tarMember{{name: "oci-layout", typ: tar.TypeReg, data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}}, b.members...)
	if !b.noIndex {
		all = append(all, tarMember{name: "index.json", typ: tar.TypeReg, data: idx})
	}
	for _, m := range all {
		h := &tar.Header{Name: m.name, Typeflag: m.typ, Size: int64(len(m.data)), Mode: 0o644, Linkname: m.link}
		if m.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if m.typ == tar.TypeReg {
			tw.Write(m.data)
		}
	}
	tw.Close()
	return buf.Bytes()
}

// sampleBundle holds two images sharing a layer, a two-platform index and
// a signature referring to the first image.
func sampleBundle() (*testBundle, map[string]digest.Digest) {
	b := &testBundle{}
	app := b.image(`{"architecture":"amd64","os":"linux"}`, "shared layer", nil)
	tool := b.image(`{"architecture":"amd64","os":"linux","config":{"Cmd":["tool"]}}`, "shared layer", nil)
	amd := b.image(`{"architecture":"amd64","os":"linux","x":1}`, "amd64 layer", nil)
	arm := b.image(`{"architecture":"arm64","os":"linux","x":2}`, "arm64 layer", nil)
	amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	multi := b.indexOf(amd, arm)
	sig := b.image(`{}`, "signature payload", &app)
	b.name("registry.example/team/app:1", app)
	b.name("registry.example/team/tool:2", tool)
	b.name("registry.example/team/multi:3", multi)
	b.name("registry.example/team/app@"+sig.Digest.String(), sig)
	return b, map[string]digest.Digest{"app": app.Digest, "tool": tool.Digest, "multi": multi.Digest, "sig": sig.Digest, "arm": arm.Digest}
}

func TestImportRoundTripAndNoOp(t *testing.T) {
	b, want := sampleBundle()
	raw := b.tar(t)
	drv := &countingDriver{StorageDriver: inmemory.New()}
	g := New(drv, Options{})
	rep, err := g.Import(context.Background(), bytes.NewReader(raw), int64(len(raw)), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 7 distinct blobs: 5 configs + 4 layers share one → 5 configs, 3 layers... count them.
	if rep.BlobsWritten != 9 || rep.BlobsPresent != 0 || len(rep.Images) != 4 {
		t.Fatalf("report %+v", rep)
	}
	for _, im := range rep.Images {
		if im.Present {
			t.Errorf("%s reported present on first import", im.Digest)
		}
	}
	if rep.Images[3].Subject != want["app"] || rep.Images[3].Tag != "" {
		t.Errorf("referrer entry: %+v", rep.Images[3])
	}

	c := &client{t: t, h: g}
	for repo, tag := range map[string]string{"team/app": "1", "team/tool": "2", "team/multi": "3"} {
		w := c.do("GET", "/v2/"+repo+"/manifests/"+tag, nil)
		c.want(w, http.StatusOK, "")
		if got := digest.FromBytes(w.Body.Bytes()); got != want[strings.TrimPrefix(repo, "team/")] {
			t.Errorf("%s:%s serves %s, want %s", repo, tag, got, want[repo])
		}
	}
	c.want(c.do("GET", "/v2/team/multi/manifests/"+want["arm"].String(), nil), http.StatusOK, "")
	w := c.do("GET", "/v2/team/app/referrers/"+want["app"].String(), nil)
	c.want(w, http.StatusOK, "")
	if !strings.Contains(w.Body.String(), want["sig"].String()) || !strings.Contains(w.Body.String(), "application/example.sig") {
		t.Errorf("referrers: %s", w.Body)
	}

	before := drv.writes.Load()
	rep, err = g.Import(context.Background(), bytes.NewReader(raw), int64(len(raw)), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := drv.writes.Load() - before; n != 0 {
		t.Errorf("second import made %d storage writes", n)
	}
	if rep.BlobsWritten != 0 || rep.BlobsPresent != 9 {
		t.Errorf("second report %+v", rep)
	}
	for _, im := range rep.Images {
		if !im.Present {
			t.Errorf("%s not reported present on second import", im.Digest)
		}
	}
}

func TestImportMovesTag(t *testing.T) {
	first, _ := sampleBundle()
	g := New(inmemory.New(), Options{})
	raw := first.tar(t)
	if _, err := g.Import(context.Background(), bytes.NewReader(raw), int64(len(raw)), ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &testBundle{}
	d := b.image(`{"architecture":"amd64","os":"linux","v":2}`, "shared layer", nil)
	b.name("registry.example/team/app:1", d)
	raw = b.tar(t)
	rep, err := g.Import(context.Background(), bytes.NewReader(raw), int64(len(raw)), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlobsWritten != 1 || rep.BlobsPresent != 1 || rep.Images[0].Present || rep.Images[0].Moved == "" {
		t.Errorf("report %+v %+v", rep, rep.Images)
	}
}

func TestImportScoped(t *testing.T) {
	b, want := sampleBundle()
	d := b.image(`{"architecture":"amd64","os":"linux","other":true}`, "other layer", nil)
	b.name("quay.example:5000/team/app:1", d)
	raw := b.tar(t)
	g := New(inmemory.New(), Options{})
	if _, err := g.Import(context.Background(), bytes.NewReader(raw), int64(len(raw)), ImportOptions{Scoped: true}); err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, h: g}
	for target, dg := range map[string]digest.Digest{
		"/v2/registry.example/team/app/manifests/1":   want["app"],
		"/v2/quay.example_5000/team/app/manifests/1":  d.Digest,
		"/v2/registry.example/team/multi/manifests/3": want["multi"],
	} {
		w := c.do("GET", target, nil)
		c.want(w, http.StatusOK, "")
		if got := w.Header().Get("Docker-Content-Digest"); got != dg.String() {
			t.Errorf("%s: %s, want %s", target, got, dg)
		}
	}
}

func TestBundleRepository(t *testing.T) {
	for _, tc := range []struct {
		ref           string
		plain, scoped string
	}{
		{"busybox", "library/busybox", "docker.io/library/busybox"},
		{"quay.io/org/app:1", "org/app", "quay.io/org/app"},
		{"127.0.0.1:5000/team/app@sha256:0123456789012345678901234567890123456789012345678901234567890123", "team/app", "127.0.0.1_5000/team/app"},
	} {
		r, err := name.ParseReference(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := BundleRepository(r, false); got != tc.plain {
			t.Errorf("%s: %s, want %s", tc.ref, got, tc.plain)
		}
		if got := BundleRepository(r, true); got != tc.scoped || !validName(got) {
			t.Errorf("%s scoped: %s, want %s (valid)", tc.ref, got, tc.scoped)
		}
	}
}

// A bundle that names images by bare tag (buildx, skopeo oci-archive:F:TAG)
// or not at all goes to the repository the operator names.
func TestImportIntoNamedRepository(t *testing.T) {
	b := &testBundle{}
	tagged := b.image(`{"architecture":"amd64","os":"linux"}`, "tagged layer", nil)
	unnamed := b.image(`{"architecture":"arm64","os":"linux"}`, "unnamed layer", nil)
	tagged.Annotations = map[string]string{ocispec.AnnotationRefName: "v1"}
	b.index.Manifests = append(b.index.Manifests, tagged, unnamed)
	raw := b.tar(t)
	g := New(inmemory.New(), Options{})
	if _, err := g.Import(context.Background(), bytes.NewReader(raw), int64(len(raw)), ImportOptions{}); err == nil || !strings.Contains(err.Error(), "--repository") {
		t.Fatalf("unnamed images imported without --repository: %v", err)
	}
	rep, err := g.Import(context.Background(), bytes.NewReader(raw), int64(len(raw)), ImportOptions{Repository: "site/app"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Images) != 2 || rep.Images[0].Repository != "site/app" || rep.Images[0].Tag != "v1" || rep.Images[1].Tag != "" {
		t.Fatalf("report %+v", rep.Images)
	}
	c := &client{t: t, h: g}
	c.want(c.do("GET", "/v2/site/app/manifests/v1", nil), http.StatusOK, "")
	c.want(c.do("GET", "/v2/site/app/manifests/"+unnamed.Digest.String(), nil), http.StatusOK, "")
	if _, err := g.Import(context.Background(), bytes.NewReader(raw), int64(len(raw)), ImportOptions{Repository: "Bad_Name"}); err == nil {
		t.Error("an invalid --repository was accepted")
	}
}

// Two imports of one bundle at once, as two processes over one data
// directory would run them, both succeed and leave one consistent copy.
func TestImportConcurrent(t *testing.T) {
	b, want := sampleBundle()
	raw := b.tar(t)
	root := t.TempDir()
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			g := New(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}), Options{})
			_, err := g.Import(context.Background(), bytes.NewReader(raw), int64(len(raw)), ImportOptions{})
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	g := New(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}), Options{})
	c := &client{t: t, h: g}
	for target, dg := range map[string]digest.Digest{"/v2/team/app/manifests/1": want["app"], "/v2/team/multi/manifests/3": want["multi"]} {
		w := c.do("GET", target, nil)
		c.want(w, http.StatusOK, "")
		if got := digest.FromBytes(w.Body.Bytes()); got != dg {
			t.Errorf("%s: %s, want %s", target, got, dg)
		}
	}
	for _, repo := range []string{"team/app", "team/tool", "team/multi"} {
		if sessions, _ := g.driver.List(context.Background(), repoPath(repo)+"/_uploads"); len(sessions) != 0 {
			t.Errorf("%s: upload sessions left: %v", repo, sessions)
		}
	}
}
