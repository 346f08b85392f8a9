package transport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testRegistry is go-containerregistry's in-process registry with hooks to
// count requests and inject faults.
type testRegistry struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string // "METHOD path"
	fault    func(w http.ResponseWriter, r *http.Request) bool
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.requests = append(tr.requests, r.Method+" "+r.URL.Path)
		fault := tr.fault
		tr.mu.Unlock()
		if fault != nil && fault(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.Close)
	return tr
}

func (r *testRegistry) host() string { return strings.TrimPrefix(r.URL, "http://") }

func (r *testRegistry) count(method, pathPart string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.requests {
		if strings.HasPrefix(q, method+" ") && strings.Contains(q, pathPart) {
			n++
		}
	}
	return n
}

func (r *testRegistry) setFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	r.mu.Lock()
	r.fault = f
	r.requests = nil
	r.mu.Unlock()
}

func pushRandom(t testing.TB, ref string, layers int) v1.Image {
	t.Helper()
	return pushRandomSize(t, ref, 64<<10, layers)
}

func pushRandomSize(t testing.TB, ref string, size int64, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(size, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, ref), img); err != nil {
		t.Fatal(err)
	}
	return img
}

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// copyOne opens src and dst and copies the one image src offers.
func copyOne(t testing.TB, s *store.Store, src, dst transport.Location, destName string, opts transport.Options) (ocispec.Descriptor, error) {
	t.Helper()
	ctx := context.Background()
	env := transport.Env{Store: s}
	from, err := transport.OpenSource(ctx, src, env)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer from.Close()
	images, err := from.Images(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	to, err := transport.OpenDestination(ctx, dst, env)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if destName == "" {
		destName = images[0].Name
	}
	d, err := transport.Copy(ctx, from, to, images[0], destName, opts)
	if err != nil {
		to.Abort()
		return d, err
	}
	return d, to.Close()
}

func digestOf(t *testing.T, img v1.Image) digest.Digest {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

// TestRoundTrip moves one image through every transport and back to a
// registry, and checks that its digest never changes.
func TestRoundTrip(t *testing.T) {
	reg := newRegistry(t)
	img := pushRandom(t, reg.host()+"/src/app:1", 3)
	want := digestOf(t, img)
	s := openStore(t)
	dir := t.TempDir()
	steps := []struct{ src, dst transport.Location }{
		{transport.Location{Kind: transport.Registry, Ref: reg.host() + "/src/app:1"}, transport.Location{Kind: transport.Store}},
		{transport.Location{Kind: transport.Store, Ref: reg.host() + "/src/app:1"}, transport.Location{Kind: transport.OCIArchive, Path: filepath.Join(dir, "oci.tar")}},
		{transport.Location{Kind: transport.OCIArchive, Path: filepath.Join(dir, "oci.tar")}, transport.Location{Kind: transport.DockerArchive, Path: filepath.Join(dir, "docker.tar")}},
		{transport.Location{Kind: transport.DockerArchive, Path: filepath.Join(dir, "docker.tar")}, transport.Location{Kind: transport.OCILayout, Path: filepath.Join(dir, "layout"), Ref: "v1"}},
		{transport.Location{Kind: transport.OCILayout, Path: filepath.Join(dir, "layout"), Ref: "v1"}, transport.Location{Kind: transport.Registry, Ref: reg.host() + "/dst/app:2"}},
	}
	for _, st := range steps {
		d, err := copyOne(t, s, st.src, st.dst, st.dst.Ref, transport.Options{})
		if err != nil {
			t.Fatalf("%s -> %s: %v", st.src, st.dst, err)
		}
		if d.Digest != want {
			t.Fatalf("%s -> %s: digest %s, want %s", st.src, st.dst, d.Digest, want)
		}
	}
	got, err := remote.Head(mustRef(t, reg.host()+"/dst/app:2"))
	if err != nil || got.Digest.String() != want.String() {
		t.Fatalf("final registry copy: %v, %v; want %s", got, err, want)
	}
}

func TestPushSkipsBlobsTheRegistryHas(t *testing.T) {
	reg := newRegistry(t)
	pushRandom(t, reg.host()+"/a/app:1", 4)
	s := openStore(t)
	if _, err := copyOne(t, s, transport.Location{Kind: transport.Registry, Ref: reg.host() + "/a/app:1"}, transport.Location{Kind: transport.Store}, "", transport.Options{}); err != nil {
		t.Fatal(err)
	}
	reg.setFault(nil) // reset counters
	if _, err := copyOne(t, s, transport.Location{Kind: transport.Store, Ref: reg.host() + "/a/app:1"}, transport.Location{Kind: transport.Registry, Ref: reg.host() + "/a/app:2"}, "", transport.Options{}); err != nil {
		t.Fatal(err)
	}
	if n := reg.count("PATCH", "/blobs/uploads/") + reg.count("PUT", "/blobs/uploads/"); n != 0 {
		t.Errorf("re-push uploaded %d blobs the registry already had", n)
	}
	// And a pull of what the store has fetches no blob.
	reg.setFault(nil)
	if _, err := copyOne(t, s, transport.Location{Kind: transport.Registry, Ref: reg.host() + "/a/app:2"}, transport.Location{Kind: transport.Store}, "", transport.Options{}); err != nil {
		t.Fatal(err)
	}
	if n := reg.count("GET", "/blobs/"); n != 0 {
		t.Errorf("re-pull fetched %d blobs the store already had", n)
	}
}

// A pull that dies halfway leaves only verified blobs and no name, and the
// next pull fetches only what is missing.
func TestInterruptedPullResumes(t *testing.T) {
	reg := newRegistry(t)
	img := pushRandom(t, reg.host()+"/a/app:1", 4)
	layers, _ := img.Layers()
	victim, _ := layers[2].Digest()
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, victim.String()) {
			w.Header().Set("Content-Length", "65536")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("truncated"))
			return true // the connection ends short, as when a pull is killed
		}
		return false
	})
	s := openStore(t)
	src := transport.Location{Kind: transport.Registry, Ref: reg.host() + "/a/app:1"}
	if _, err := copyOne(t, s, src, transport.Location{Kind: transport.Store}, "", transport.Options{Jobs: 1}); err == nil {
		t.Fatal("pull with a truncated blob succeeded")
	}
	if _, err := s.Resolve(context.Background(), reg.host()+"/a/app:1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("failed pull named the image: %v", err)
	}
	if _, err := s.Stat(context.Background(), digest.Digest(victim.String())); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("truncated blob is visible in the store")
	}
	assertStoreVerified(t, s)
	fetchedBefore := reg.count("GET", "/blobs/sha256:")
	reg.setFault(nil)
	if _, err := copyOne(t, s, src, transport.Location{Kind: transport.Store}, "", transport.Options{}); err != nil {
		t.Fatal(err)
	}
	if got := reg.count("GET", "/blobs/sha256:"); got >= len(layers)+1 || fetchedBefore == 0 {
		t.Errorf("second pull fetched %d blobs; want only those the first did not finish", got)
	}
}

// assertStoreVerified checks every blob under blobs/ hashes to its name.
func assertStoreVerified(t *testing.T, s *store.Store) {
	t.Helper()
	err := s.Walk(context.Background(), func(d digest.Digest, _ int64) error {
		f, err := os.Open(filepath.Join(s.Dir(), "blobs", d.Algorithm().String(), d.Encoded()))
		if err != nil {
			return err
		}
		defer f.Close()
		got, err := d.Algorithm().FromReader(f)
		if err != nil || got != d {
			return fmt.Errorf("blob %s holds %s", d, got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBadRemotes(t *testing.T) {
	reg := newRegistry(t)
	img := pushRandom(t, reg.host()+"/a/app:1", 2)
	layers, _ := img.Layers()
	bad, _ := layers[0].Digest()
	for _, tc := range []struct {
		name  string
		ref   string
		fault func(w http.ResponseWriter, r *http.Request) bool
		want  error
	}{
		{"missing image", reg.host() + "/a/nope:1", nil, store.ErrNotFound},
		{"unreachable", "127.0.0.1:1/a/app:1", nil, transport.ErrUnreachable},
		{"unauthorized", reg.host() + "/a/app:1", func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}, transport.ErrUnauthorized},
		{"forbidden", reg.host() + "/a/app:1", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/v2/" {
				return false
			}
			w.WriteHeader(http.StatusForbidden)
			return true
		}, transport.ErrDenied},
		{"wrong blob content", reg.host() + "/a/app:1", func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, bad.String()) {
				sz, _ := layers[0].Size()
				w.Header().Set("Content-Length", fmt.Sprint(sz))
				io.Copy(w, io.LimitReader(zeros{}, sz))
				return true
			}
			return false
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg.setFault(tc.fault)
			defer reg.setFault(nil)
			s := openStore(t)
			_, err := copyOne(t, s, transport.Location{Kind: transport.Registry, Ref: tc.ref}, transport.Location{Kind: transport.Store}, "", transport.Options{})
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("error is not one line: %q", err)
			}
			if list, _ := s.List(context.Background()); len(list) != 0 {
				t.Errorf("store changed: %v", list)
			}
			assertStoreVerified(t, s)
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestPlatformSelection(t *testing.T) {
	reg := newRegistry(t)
	var idx v1.ImageIndex = empty.Index
	want := map[string]digest.Digest{}
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "arm", Variant: "v7"}} {
		img, _ := random.Image(1024, 1)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		want[p.OS+"/"+p.Architecture] = digestOf(t, img)
	}
	ref := reg.host() + "/multi/app:1"
	if err := remote.WriteIndex(mustRef(t, ref), idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	src := transport.Location{Kind: transport.Registry, Ref: ref}
	for _, tc := range []struct {
		opts transport.Options
		want digest.Digest
	}{
		{transport.Options{Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}}, want["linux/arm64"]},
		{transport.Options{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}}, want["linux/amd64"]},
		{transport.Options{AllPlatforms: true}, digest.Digest(idxDigest.String())},
	} {
		s := openStore(t)
		d, err := copyOne(t, s, src, transport.Location{Kind: transport.Store}, "", tc.opts)
		if err != nil || d.Digest != tc.want {
			t.Errorf("%+v: got %s, %v; want %s", tc.opts, d.Digest, err, tc.want)
		}
	}
	s := openStore(t)
	_, err := copyOne(t, s, src, transport.Location{Kind: transport.Store}, "", transport.Options{Platform: ocispec.Platform{OS: "windows", Architecture: "amd64"}})
	if err == nil || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("missing platform: %v; want an error listing what the index has", err)
	}
}

func TestParseLocation(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want transport.Location
		err  bool
	}{
		{in: "busybox", want: transport.Location{Kind: transport.Registry, Ref: "busybox"}},
		{in: "docker://127.0.0.1:5000/a:1", want: transport.Location{Kind: transport.Registry, Ref: "127.0.0.1:5000/a:1"}},
		{in: "oci:/tmp/x", want: transport.Location{Kind: transport.OCILayout, Path: "/tmp/x"}},
		{in: "oci:/tmp/x:127.0.0.1:5000/a:1", want: transport.Location{Kind: transport.OCILayout, Path: "/tmp/x", Ref: "127.0.0.1:5000/a:1"}},
		{in: "oci-archive:a.tar:v1", want: transport.Location{Kind: transport.OCIArchive, Path: "a.tar", Ref: "v1"}},
		{in: "docker-archive:a.tar", want: transport.Location{Kind: transport.DockerArchive, Path: "a.tar"}},
		{in: "docker://", err: true},
		{in: "oci:", err: true},
		{in: "", err: true},
		{in: "ftp://host/x", err: true},
	} {
		got, err := transport.ParseLocation(tc.in, transport.Registry)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParseLocation(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}
