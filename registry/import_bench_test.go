package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeBigBundle writes a bundle of one image with layers of size random
// bytes each to path, streaming, and returns its size.
func writeBigBundle(b *testing.B, path string, layers int, size int64) int64 {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	put := func(n string, sz int64, r io.Reader) {
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Size: sz, Mode: 0o644}); err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyN(tw, r, sz); err != nil {
			b.Fatal(err)
		}
	}
	putBlob := func(mt string, data []byte) ocispec.Descriptor {
		d := digest.FromBytes(data)
		put("blobs/sha256/"+d.Encoded(), int64(len(data)), bytes.NewReader(data))
		return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(data))}
	}
	m := ocispec.Manifest{Versioned: specsVersioned, MediaType: ocispec.MediaTypeImageManifest}
	m.Config = putBlob(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	for i := range layers {
		// Hash first, then write: the name comes before the data.
		d, err := digest.FromReader(io.LimitReader(rand.NewChaCha8([32]byte{byte(i)}), size))
		if err != nil {
			b.Fatal(err)
		}
		put("blobs/sha256/"+d.Encoded(), size, rand.NewChaCha8([32]byte{byte(i)}))
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: size})
	}
	raw, _ := json.Marshal(m)
	md := putBlob(ocispec.MediaTypeImageManifest, raw)
	md.Annotations = map[string]string{annotationImageName: "registry.example/bench/app:1"}
	idx, _ := json.Marshal(ocispec.Index{Versioned: specsVersioned, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md}})
	put("oci-layout", 30, bytes.NewReader([]byte(`{"imageLayoutVersion":"1.0.0"}`)))
	put("index.json", int64(len(idx)), bytes.NewReader(idx))
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	fi, _ := f.Stat()
	return fi.Size()
}

// BenchmarkImport imports a 4 × 64 MiB bundle into an empty registry on
// the filesystem driver, then again (the no-op), and reports MB/s.
func BenchmarkImport(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "bundle.tar")
	size := writeBigBundle(b, path, 4, 64<<20)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for _, again := range []bool{false, true} {
		name := "empty"
		if again {
			name = "again"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				root := filepath.Join(dir, "root")
				if !again {
					os.RemoveAll(root)
				}
				g := New(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}), Options{})
				if again && i == 0 {
					if _, err := g.Import(context.Background(), f, size, ImportOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if _, err := g.Import(context.Background(), f, size, ImportOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
