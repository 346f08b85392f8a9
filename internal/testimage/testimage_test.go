package testimage_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/imgtool/imgtool/internal/testimage"
	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func readJSON(t *testing.T, s *store.Store, d ocispec.Descriptor, v any) {
	t.Helper()
	raw, err := store.ReadManifest(context.Background(), s, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decode %s: %v", d.MediaType, err)
	}
}

// entry is what a layer holds under one name.
type entry struct {
	typ     byte
	size    int64
	content string // for entries of at most 64 bytes, and symlinks
}

// readLayer reads layer l back through the store (which checks its digest),
// checks its size and diffID, and returns its entries.
func readLayer(t *testing.T, s *store.Store, l ocispec.Descriptor, diffID digest.Digest) map[string]entry {
	t.Helper()
	rc, err := s.Open(context.Background(), l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	blob := &countReader{r: rc}
	var tarStream io.Reader = blob
	if l.MediaType == ocispec.MediaTypeImageLayerGzip {
		gz, err := gzip.NewReader(blob)
		if err != nil {
			t.Fatal(err)
		}
		tarStream = gz
	} else if l.MediaType != ocispec.MediaTypeImageLayer {
		t.Fatalf("layer media type %s", l.MediaType)
	}
	v := diffID.Verifier()
	tr := tar.NewReader(io.TeeReader(tarStream, v))
	got := map[string]entry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		} else if !h.ModTime.Equal(testimage.Created) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %v, owner %d:%d; want %v, 0:0", h.Name, h.ModTime, h.Uid, h.Gid, testimage.Created)
		}
		e := entry{typ: h.Typeflag, size: h.Size}
		if h.Size <= 64 {
			b, _ := io.ReadAll(tr)
			e.content = string(b)
		}
		if h.Typeflag == tar.TypeSymlink {
			e.content = "-> " + h.Linkname
		}
		got[h.Name] = e
	}
	if _, err := io.Copy(io.Discard, tarStream); err != nil { // the tar's padding, and the store's digest check
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, blob); err != nil {
		t.Fatal(err)
	}
	if !v.Verified() {
		t.Errorf("layer %s does not match its diffID %s", l.Digest, diffID)
	}
	if blob.n != l.Size {
		t.Errorf("layer %s has %d bytes, its descriptor says %d", l.Digest, blob.n, l.Size)
	}
	return got
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// anyContent matches any content: random data is checked by size and by
// the layer's digests.
const anyContent = "*"

// randomLayer is what a random layer of size bytes holds.
func randomLayer(layer string, sizes ...int64) map[string]entry {
	m := map[string]entry{layer + "/": {typ: tar.TypeDir}}
	for i, n := range sizes {
		m[fmt.Sprintf("%s/file%d.bin", layer, i)] = entry{typ: tar.TypeReg, size: n, content: anyContent}
	}
	return m
}

func TestWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := errors.Join(os.MkdirAll(filepath.Join(dir, "etc"), 0o755),
		os.WriteFile(filepath.Join(dir, "etc", "motd"), []byte("hello\n"), 0o644),
		os.Symlink("etc/motd", filepath.Join(dir, "motd"))); err != nil {
		t.Fatal(err)
	}
	arm64 := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	for _, tc := range []struct {
		name     string
		opts     testimage.Options
		layers   []map[string]entry
		platform ocispec.Platform
	}{
		{"zero options", testimage.Options{},
			[]map[string]entry{randomLayer("layer0", 1<<18, 1<<18, 1<<18, 1<<18)}, manifest.Native()},
		{"three odd-sized layers", testimage.Options{Layers: 3, LayerSize: 100_003, Seed: 7},
			[]map[string]entry{
				randomLayer("layer0", 25_000, 25_000, 25_000, 25_003),
				randomLayer("layer1", 25_000, 25_000, 25_000, 25_003),
				randomLayer("layer2", 25_000, 25_000, 25_000, 25_003),
			}, manifest.Native()},
		{"tiny layer is one file", testimage.Options{LayerSize: 3},
			[]map[string]entry{randomLayer("layer0", 3)}, manifest.Native()},
		{"uncompressed", testimage.Options{Layers: 2, LayerSize: 4096, Compression: testimage.None},
			[]map[string]entry{randomLayer("layer0", 1024, 1024, 1024, 1024), randomLayer("layer1", 1024, 1024, 1024, 1024)}, manifest.Native()},
		{"files only", testimage.Options{Files: map[string][]byte{"etc/motd": []byte("hi\n"), "bin/sh": []byte("#!"), "README": nil}},
			[]map[string]entry{{
				"README":   {typ: tar.TypeReg},
				"bin/":     {typ: tar.TypeDir},
				"bin/sh":   {typ: tar.TypeReg, size: 2, content: "#!"},
				"etc/":     {typ: tar.TypeDir},
				"etc/motd": {typ: tar.TypeReg, size: 3, content: "hi\n"},
			}}, manifest.Native()},
		{"dir, files and a random layer", testimage.Options{Dir: dir, Files: map[string][]byte{"a/b/c": []byte("c")}, Layers: 1, LayerSize: 8},
			[]map[string]entry{
				{"etc/": {typ: tar.TypeDir}, "etc/motd": {typ: tar.TypeReg, size: 6, content: "hello\n"}, "motd": {typ: tar.TypeSymlink, content: "-> etc/motd"}},
				{"a/": {typ: tar.TypeDir}, "a/b/": {typ: tar.TypeDir}, "a/b/c": {typ: tar.TypeReg, size: 1, content: "c"}},
				randomLayer("layer0", 2, 2, 2, 2),
			}, manifest.Native()},
		{"other platform", testimage.Options{Platform: ocispec.Platform{OS: "linux", Architecture: "aarch64"}},
			[]map[string]entry{randomLayer("layer0", 1<<18, 1<<18, 1<<18, 1<<18)}, arm64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			d, err := testimage.Write(ctx, s, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if d.MediaType != ocispec.MediaTypeImageManifest || d.Platform == nil || manifest.FormatPlatform(*d.Platform) != manifest.FormatPlatform(tc.platform) {
				t.Errorf("descriptor %+v: want an OCI manifest for %v", d, tc.platform)
			}
			var m ocispec.Manifest
			var cfg ocispec.Image
			readJSON(t, s, d, &m)
			readJSON(t, s, m.Config, &cfg)
			if m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest || m.Config.MediaType != ocispec.MediaTypeImageConfig {
				t.Errorf("manifest: schema %d, media type %q, config %q", m.SchemaVersion, m.MediaType, m.Config.MediaType)
			}
			if cfg.OS != tc.platform.OS || cfg.Architecture != tc.platform.Architecture || !slices.Equal(cfg.Config.Cmd, []string{"/bin/sh"}) ||
				cfg.Created == nil || !cfg.Created.Equal(testimage.Created) || cfg.RootFS.Type != "layers" {
				t.Errorf("config: %s/%s, cmd %q, created %v, rootfs type %q", cfg.OS, cfg.Architecture, cfg.Config.Cmd, cfg.Created, cfg.RootFS.Type)
			}
			if len(m.Layers) != len(tc.layers) || len(cfg.RootFS.DiffIDs) != len(tc.layers) || len(cfg.History) != len(tc.layers) {
				t.Fatalf("%d layers, %d diffIDs, %d history entries; want %d", len(m.Layers), len(cfg.RootFS.DiffIDs), len(cfg.History), len(tc.layers))
			}
			wantType := ocispec.MediaTypeImageLayerGzip
			if tc.opts.Compression == testimage.None {
				wantType = ocispec.MediaTypeImageLayer
			}
			for i, l := range m.Layers {
				if l.MediaType != wantType {
					t.Errorf("layer %d: media type %s, want %s", i, l.MediaType, wantType)
				}
				if wantType == ocispec.MediaTypeImageLayer && l.Digest != cfg.RootFS.DiffIDs[i] {
					t.Errorf("layer %d: uncompressed, but digest %s != diffID %s", i, l.Digest, cfg.RootFS.DiffIDs[i])
				}
				got := readLayer(t, s, l, cfg.RootFS.DiffIDs[i])
				for name, want := range tc.layers[i] {
					g, ok := got[name]
					if !ok {
						t.Errorf("layer %d: no %s", i, name)
						continue
					}
					if want.content == anyContent {
						g.content = anyContent
					}
					if g != want {
						t.Errorf("layer %d: %s is %+v, want %+v", i, name, g, want)
					}
				}
				if len(got) != len(tc.layers[i]) {
					t.Errorf("layer %d holds %d entries, want %d: %v", i, len(got), len(tc.layers[i]), got)
				}
			}
			// The same options give the same image, in another store too.
			again, err := testimage.Write(ctx, openStore(t), tc.opts)
			if err != nil || again.Digest != d.Digest {
				t.Errorf("same options gave %s, then %s (%v)", d.Digest, again.Digest, err)
			}
		})
	}
}

func TestRandomDataIsIncompressibleAndSeeded(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	layers := func(o testimage.Options) []ocispec.Descriptor {
		d, err := testimage.Write(ctx, s, o)
		if err != nil {
			t.Fatal(err)
		}
		var m ocispec.Manifest
		readJSON(t, s, d, &m)
		return m.Layers
	}
	const size = 1 << 20
	a := layers(testimage.Options{Layers: 2, LayerSize: size, Seed: 1})
	b := layers(testimage.Options{Layers: 2, LayerSize: size, Seed: 2})
	if a[0].Digest == a[1].Digest {
		t.Error("two layers of one image are the same blob")
	}
	for _, l := range a {
		if slices.ContainsFunc(b, func(o ocispec.Descriptor) bool { return o.Digest == l.Digest }) {
			t.Errorf("seeds 1 and 2 share layer %s", l.Digest)
		}
		if l.Size < size {
			t.Errorf("layer of %d bytes of data compressed to %d: the data is not random", size, l.Size)
		}
	}
}

func TestWriteIndex(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	platforms := []ocispec.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64"},
		{OS: "linux", Architecture: "arm", Variant: "v7"},
	}
	d, err := testimage.WriteIndex(ctx, s, platforms, testimage.Options{Layers: 2, LayerSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if d.MediaType != ocispec.MediaTypeImageIndex {
		t.Errorf("media type %s, want %s", d.MediaType, ocispec.MediaTypeImageIndex)
	}
	var idx ocispec.Index
	readJSON(t, s, d, &idx)
	if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex || len(idx.Manifests) != len(platforms) {
		t.Fatalf("index: schema %d, media type %q, %d manifests", idx.SchemaVersion, idx.MediaType, len(idx.Manifests))
	}
	layers := map[digest.Digest]bool{}
	for i, md := range idx.Manifests {
		if md.Platform == nil || manifest.FormatPlatform(*md.Platform) != manifest.FormatPlatform(platforms[i]) {
			t.Errorf("manifest %d: platform %v, want %v", i, md.Platform, platforms[i])
		}
		var m ocispec.Manifest
		var cfg ocispec.Image
		readJSON(t, s, md, &m)
		readJSON(t, s, m.Config, &cfg)
		if cfg.Platform.OS != platforms[i].OS || cfg.Architecture != platforms[i].Architecture || cfg.Variant != platforms[i].Variant {
			t.Errorf("manifest %d: config for %s, want %s", i, manifest.FormatPlatform(cfg.Platform), manifest.FormatPlatform(platforms[i]))
		}
		for j, l := range m.Layers {
			if layers[l.Digest] {
				t.Errorf("manifest %d layer %d: %s is shared with another platform", i, j, l.Digest)
			}
			layers[l.Digest] = true
			readLayer(t, s, l, cfg.RootFS.DiffIDs[j])
		}
	}
	sel, err := manifest.Select(idx, platforms[1])
	if err != nil || sel.Digest != idx.Manifests[1].Digest {
		t.Errorf("select %s: %v, %v", manifest.FormatPlatform(platforms[1]), sel.Digest, err)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	linux := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	for _, tc := range []struct {
		name      string
		ctx       context.Context
		opts      testimage.Options
		platforms []ocispec.Platform // WriteIndex when set
	}{
		{"negative layers", ctx, testimage.Options{Layers: -1}, nil},
		{"negative size", ctx, testimage.Options{LayerSize: -1}, nil},
		{"zstd", ctx, testimage.Options{Compression: "zstd"}, nil},
		{"os without arch", ctx, testimage.Options{Platform: ocispec.Platform{OS: "linux"}}, nil},
		{"parent escape", ctx, testimage.Options{Files: map[string][]byte{"../x": nil}}, nil},
		{"absolute file", ctx, testimage.Options{Files: map[string][]byte{"/etc/passwd": nil}}, nil},
		{"empty element", ctx, testimage.Options{Files: map[string][]byte{"a//b": nil}}, nil},
		{"file is a dir", ctx, testimage.Options{Files: map[string][]byte{"a": nil, "a/b": nil}}, nil},
		{"missing dir", ctx, testimage.Options{Dir: filepath.Join(t.TempDir(), "nope")}, nil},
		{"canceled", canceled, testimage.Options{LayerSize: 8 << 20}, nil},
		{"no platforms", ctx, testimage.Options{}, []ocispec.Platform{}},
		{"duplicate platform", ctx, testimage.Options{}, []ocispec.Platform{linux, {OS: "linux", Architecture: "x86_64"}}},
		{"index platform without os", ctx, testimage.Options{}, []ocispec.Platform{{Architecture: "amd64"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			var err error
			if tc.platforms != nil {
				_, err = testimage.WriteIndex(tc.ctx, s, tc.platforms, tc.opts)
			} else {
				_, err = testimage.Write(tc.ctx, s, tc.opts)
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.ctx == canceled && !errors.Is(err, context.Canceled) {
				t.Errorf("error %v does not wrap context.Canceled", err)
			}
			t.Log(err)
			ingest, _ := os.ReadDir(filepath.Join(s.Dir(), ".imgtool", "ingest"))
			if len(ingest) != 0 {
				t.Errorf("%d ingest files left behind", len(ingest))
			}
		})
	}
}

// TestStreams checks that a big layer is never held in memory: what Write
// allocates is a small fraction of the layer.
func TestStreams(t *testing.T) {
	const size, budget = 64 << 20, 16 << 20
	s := openStore(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := testimage.Write(context.Background(), s, testimage.Options{LayerSize: size}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > budget {
		t.Errorf("writing a %d MiB layer allocated %d MiB; want under %d MiB", size>>20, got>>20, budget>>20)
	} else {
		t.Logf("writing a %d MiB layer allocated %.1f MiB", size>>20, float64(got)/(1<<20))
	}
}

func BenchmarkWrite(b *testing.B) {
	const size = 32 << 20
	s, err := store.Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		if _, err := testimage.Write(context.Background(), s, testimage.Options{LayerSize: size, Seed: int64(i)}); err != nil {
			b.Fatal(err)
		}
	}
}
