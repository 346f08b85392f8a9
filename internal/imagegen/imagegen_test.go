package imagegen_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgtool/imgtool/internal/imagegen"
	"github.com/imgtool/imgtool/store"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func readJSON(t *testing.T, s *store.Store, d ocispec.Descriptor, v any) {
	t.Helper()
	raw, err := store.ReadManifest(context.Background(), s, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

// layerFiles reads a layer back, checks its diffID, and lists its files.
func layerFiles(t *testing.T, s *store.Store, l ocispec.Descriptor, diffID digest.Digest) map[string]int64 {
	t.Helper()
	rc, err := s.Open(context.Background(), l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	gz, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	v := diffID.Verifier()
	tr := tar.NewReader(io.TeeReader(gz, v))
	files := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h.Size
	}
	io.Copy(io.Discard, gz)
	if !v.Verified() {
		t.Errorf("layer %s does not match its diffID %s", l.Digest, diffID)
	}
	return files
}

func TestWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc", "hello"), []byte("hello\n"), 0o644)
	os.Symlink("etc/hello", filepath.Join(dir, "link"))
	for _, tc := range []struct {
		name  string
		opts  imagegen.Options
		files []map[string]int64
	}{
		{"dir", imagegen.Options{Dir: dir}, []map[string]int64{{"etc/": 0, "etc/hello": 6, "link": 0}}},
		{"random", imagegen.Options{Layers: 2, LayerSize: 40 << 20, Seed: 7}, []map[string]int64{
			{"data/layer0/file0": 32 << 20, "data/layer0/file1": 8 << 20},
			{"data/layer1/file0": 32 << 20, "data/layer1/file1": 8 << 20},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := store.Open(ctx, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			d, err := imagegen.Write(ctx, s, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var m ocispec.Manifest
			var cfg ocispec.Image
			readJSON(t, s, d, &m)
			readJSON(t, s, m.Config, &cfg)
			if len(m.Layers) != len(tc.files) || len(cfg.RootFS.DiffIDs) != len(tc.files) {
				t.Fatalf("%d layers, %d diffIDs; want %d", len(m.Layers), len(cfg.RootFS.DiffIDs), len(tc.files))
			}
			for i, l := range m.Layers {
				got := layerFiles(t, s, l, cfg.RootFS.DiffIDs[i])
				for name, size := range tc.files[i] {
					if got[name] != size {
						t.Errorf("layer %d: %s has %d bytes, want %d (files: %v)", i, name, got[name], size, got)
					}
				}
			}
			again, err := imagegen.Write(ctx, s, tc.opts)
			if err != nil || again.Digest != d.Digest {
				t.Errorf("same options gave %s, then %s (%v)", d.Digest, again.Digest, err)
			}
		})
	}
}
