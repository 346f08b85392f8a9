package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func open(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t *testing.T, s *store.Store, mt string, data []byte) ocispec.Descriptor {
	t.Helper()
	d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := store.Put(context.Background(), s, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return d
}

// image writes a one-layer image and returns its manifest descriptor.
func image(t *testing.T, s *store.Store, layer string) ocispec.Descriptor {
	t.Helper()
	cfg := put(t, s, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	l := put(t, s, ocispec.MediaTypeImageLayer, []byte(layer))
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{l}})
	return put(t, s, ocispec.MediaTypeImageManifest, m)
}

func ingestEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, ".imgtool", "ingest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("ingest not cleaned up: %d entries left", len(entries))
	}
}

func TestBlobRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		data := []byte("hello " + alg.String())
		d := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: alg.FromBytes(data), Size: int64(len(data))}
		if err := store.Put(ctx, s, d, bytes.NewReader(data)); err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		rc, err := s.Open(ctx, d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: read %q, %v", alg, got, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "blobs", alg.String(), d.Digest.Encoded())); err != nil {
			t.Errorf("blob not at its layout path: %v", err)
		}
	}
	ingestEmpty(t, dir)
}

func TestCommitMismatchLeavesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	data := []byte("the real content")
	for name, want := range map[string]ocispec.Descriptor{
		"digest": {Digest: digest.FromString("other"), Size: int64(len(data))},
		"size":   {Digest: digest.FromBytes(data), Size: 3},
		"sha512": {Digest: digest.SHA512.FromString("other")},
	} {
		w, err := s.Writer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if _, err := w.Commit(ctx, want); !errors.Is(err, store.ErrMismatch) {
			t.Errorf("%s: commit error %v, want ErrMismatch", name, err)
		}
		if _, err := s.Stat(ctx, want.Digest); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: blob visible after failed commit: %v", name, err)
		}
		if _, err := s.Stat(ctx, digest.FromBytes(data)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: content visible under its own digest after failed commit: %v", name, err)
		}
		w.Cancel()
	}
	ingestEmpty(t, dir)
}

func TestOpenDetectsCorruption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	d := put(t, s, "application/octet-stream", []byte("original"))
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Digest.Encoded()), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Open(ctx, d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, store.ErrMismatch) {
		t.Fatalf("read of tampered blob: %v, want ErrMismatch", err)
	}
}

func TestRejectsHostileDigest(t *testing.T) {
	s := open(t, t.TempDir())
	for _, d := range []digest.Digest{"sha256:../../etc/passwd", "../x", "sha256:" + "zz", ""} {
		if _, err := s.Open(context.Background(), d); err == nil {
			t.Errorf("Open(%q) succeeded", d)
		}
		if _, err := s.Stat(context.Background(), d); err == nil {
			t.Errorf("Stat(%q) succeeded", d)
		}
	}
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                   "docker.io/library/busybox:latest",
		"busybox:1.36":              "docker.io/library/busybox:1.36",
		"docker.io/library/busybox": "docker.io/library/busybox:latest",
		"index.docker.io/foo/bar:1": "docker.io/foo/bar:1",
		"127.0.0.1:5000/app:v1":     "127.0.0.1:5000/app:v1",
		"localhost:5000/a/b/c":      "localhost:5000/a/b/c:latest",
		"quay.io/x/y@" + digest.FromString("x").String(): "quay.io/x/y@" + digest.FromString("x").String(),
	} {
		got, err := store.NormalizeRef(in)
		if err != nil || got != want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "UPPER/case", "a b", "x:"} {
		if _, err := store.NormalizeRef(bad); err == nil {
			t.Errorf("NormalizeRef(%q) accepted", bad)
		}
	}
}

func TestRefs(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	a, b := image(t, s, "a"), image(t, s, "b")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Set(ctx, "app:1", a))
	must(s.Set(ctx, "docker.io/library/app:2", a))
	must(s.Set(ctx, "app:1", b)) // retag moves the name
	for ref, want := range map[string]digest.Digest{
		"app:1": b.Digest, "app:2": a.Digest, "docker.io/library/app:1": b.Digest,
		b.Digest.String(): b.Digest, b.Digest.Encoded()[:12]: b.Digest,
	} {
		im, err := s.Resolve(ctx, ref)
		if err != nil || im.Descriptor.Digest != want {
			t.Errorf("Resolve(%q) = %v, %v; want %s", ref, im.Descriptor.Digest, err, want)
		}
	}
	if _, err := s.Resolve(ctx, "app:3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Resolve(app:3) = %v, want ErrNotFound", err)
	}
	removed, err := s.Untag(ctx, "app:2")
	must(err)
	if len(removed) != 1 || removed[0] != "docker.io/library/app:2" {
		t.Errorf("Untag removed %v", removed)
	}
	if _, err := s.Untag(ctx, "app:2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Untag: %v, want ErrNotFound", err)
	}
	list, err := s.List(ctx)
	must(err)
	if len(list) != 1 || list[0].Name != "docker.io/library/app:1" {
		t.Errorf("List = %+v", list)
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	keep, drop := image(t, s, "keep"), image(t, s, "drop")
	if err := s.Set(ctx, "keep:1", keep); err != nil {
		t.Fatal(err)
	}
	// An abandoned ingest, as a killed pull leaves.
	w, _ := s.Writer(ctx)
	w.Write([]byte("partial"))
	rep, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blobs != 2 { // drop's layer and manifest; the config is shared
		t.Errorf("pruned %d blobs, want 2", rep.Blobs)
	}
	if _, err := s.Stat(ctx, drop.Digest); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unreferenced manifest survived prune")
	}
	if n, err := s.Size(ctx, keep); err != nil || n == 0 {
		t.Errorf("kept image lost content: %d, %v", n, err)
	}
	ingestEmpty(t, dir)
}

func TestPruneWaitsForOtherStores(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	other := open(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.Prune(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("prune with another store open: %v, want it to wait", err)
	}
	other.Close()
	if _, err := s.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Concurrent writers in separate Stores (separate lock descriptors, as
// separate processes have) must not lose each other's index updates.
func TestConcurrentSet(t *testing.T) {
	dir := t.TempDir()
	base := open(t, dir)
	d := image(t, base, "x")
	var wg sync.WaitGroup
	const n = 16
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := store.Open(context.Background(), dir)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			errs <- s.Set(context.Background(), fmt.Sprintf("app:%d", i), d)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	list, _ := base.List(context.Background())
	if len(list) != n {
		t.Fatalf("index has %d entries after %d concurrent tags", len(list), n)
	}
}
