// Package imagegen makes real OCI images on the fly for tests, the demo
// and benchmarks: layers of seeded random data, or one layer holding a
// directory, streamed into a store without ever holding a layer in memory.
//
// It is test tooling, not the layer writer: `imgtool import` and the
// layer package (issue 3) own deterministic layer writing for users.
package imagegen

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/imgtool/imgtool/store"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Options say what image to make.
type Options struct {
	// Dir, when set, becomes the image's only layer.
	Dir string
	// Layers of LayerSize bytes of random data each, when Dir is empty.
	Layers    int
	LayerSize int64
	// Seed makes the random data reproducible.
	Seed uint64
	// Platform of the image (zero: this machine's).
	Platform ocispec.Platform
}

// created is fixed so that the same options give the same image.
var created = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Write makes the image in b and returns its manifest descriptor.
func Write(ctx context.Context, b store.Blobs, o Options) (ocispec.Descriptor, error) {
	if o.Platform.OS == "" {
		o.Platform = ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	}
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	add := func(fill func(*tar.Writer) error) error {
		d, diffID, err := writeLayer(ctx, b, fill)
		layers, diffIDs = append(layers, d), append(diffIDs, diffID)
		return err
	}
	if o.Dir != "" {
		if err := add(func(tw *tar.Writer) error { return tarDir(tw, o.Dir) }); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	for i := range o.Layers {
		rng := rand.New(rand.NewChaCha8(seed(o.Seed, i)))
		if err := add(func(tw *tar.Writer) error { return tarRandom(tw, rng, i, o.LayerSize) }); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	cfg := ocispec.Image{
		Created: &created, Platform: o.Platform,
		Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	cfgDesc, err := putJSON(ctx, b, ocispec.MediaTypeImageConfig, cfg)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: layers}
	return putJSON(ctx, b, ocispec.MediaTypeImageManifest, m)
}

func seed(s uint64, layer int) [32]byte {
	var out [32]byte
	for i := range 8 {
		out[i] = byte(s >> (8 * i))
	}
	out[8] = byte(layer)
	out[9] = byte(layer >> 8)
	return out
}

func putJSON(ctx context.Context, b store.Blobs, mt string, v any) (ocispec.Descriptor, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode %s: %w", mt, err)
	}
	d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if err := store.Put(ctx, b, d, bytes.NewReader(raw)); err != nil {
		return ocispec.Descriptor{}, err
	}
	return d, nil
}

// writeLayer streams a tar through gzip into b, hashing the tar (diffID)
// and the blob (digest) in the same pass.
func writeLayer(ctx context.Context, b store.Blobs, fill func(*tar.Writer) error) (ocispec.Descriptor, digest.Digest, error) {
	w, err := b.Writer(ctx)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer w.Cancel()
	blob := digest.SHA256.Digester()
	counter := &countWriter{}
	gz, err := gzip.NewWriterLevel(io.MultiWriter(w, blob.Hash(), counter), gzip.BestSpeed)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	diff := digest.SHA256.Digester()
	tw := tar.NewWriter(io.MultiWriter(gz, diff.Hash()))
	if err := fill(tw); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("write layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("write layer: %w", err)
	}
	if err := gz.Close(); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("write layer: %w", err)
	}
	d, err := w.Commit(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: blob.Digest(), Size: counter.n})
	return d, diff.Digest(), err
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// tarRandom writes size bytes of random data, in files of at most 32 MiB.
func tarRandom(tw *tar.Writer, rng *rand.Rand, layer int, size int64) error {
	const chunk = 32 << 20
	buf := make([]byte, 1<<20)
	for f := 0; size > 0; f++ {
		n := min(size, chunk)
		size -= n
		h := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("data/layer%d/file%d", layer, f), Size: n, Mode: 0o644, ModTime: created, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		for n > 0 {
			k := min(n, int64(len(buf)))
			for i := 0; i+8 <= int(k); i += 8 {
				v := rng.Uint64()
				for j := range 8 {
					buf[i+j] = byte(v >> (8 * j))
				}
			}
			if _, err := tw.Write(buf[:k]); err != nil {
				return err
			}
			n -= k
		}
	}
	return nil
}

// tarDir writes the regular files, directories and symlinks under dir in
// lexical order (filepath.WalkDir's), owned by root, with fixed times.
func tarDir(tw *tar.Writer, dir string) error {
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := e.Info()
		if err != nil {
			return err
		}
		var link string
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname, h.Format = filepath.ToSlash(rel), created, 0, 0, "", "", tar.FormatPAX
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		if e.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
}
