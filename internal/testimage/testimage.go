// Package testimage makes real OCI images on the fly for tests, the demo
// and benchmarks, with no network and no daemon: layers of deterministic,
// incompressible pseudo-random data (or given files, or a directory), an
// image config and an image manifest, and for multi-platform tests an
// image index.
//
// Each layer is generated, tarred, compressed and hashed in one streaming
// pass straight into a store.Writer, so memory stays small (a few MiB)
// whatever the layer size. It is test tooling: the layer package owns
// writing layers for users.
package testimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression values for Options.Compression.
const (
	Gzip = "gzip"
	None = "none"
)

// DefaultLayerSize is the LayerSize used when Options.LayerSize is zero.
const DefaultLayerSize = 1 << 20

// filesPerLayer is how many files a random layer's data is split over.
const filesPerLayer = 4

// Created is the fixed creation time of every image, history entry and
// tar entry, so that the same Options always give the same digests.
var Created = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Options say what image to make. The zero value makes a gzip image for
// this machine's platform with one 1 MiB layer of random data.
type Options struct {
	// Layers is the number of layers of pseudo-random data. When it is
	// zero and neither Dir nor Files is set, the image has one.
	Layers int
	// LayerSize is the bytes of file content in each random layer
	// (DefaultLayerSize when zero), split over a few files. The tar and
	// the blob are slightly larger: the data does not compress.
	LayerSize int64
	// Files, when set, become a layer holding exactly these regular files
	// (slash-separated relative path → content) and their parent
	// directories. It comes before the random layers.
	Files map[string][]byte
	// Dir, when set, becomes the first layer: the regular files,
	// directories and symlinks under Dir, owned by root, with fixed times.
	Dir string
	// Seed selects the random data; the same seed gives the same bytes.
	Seed int64
	// Platform of the image; zero means this machine's (manifest.Native).
	Platform ocispec.Platform
	// Compression of the layers: Gzip (the default, at BestSpeed) or None.
	Compression string
}

// Write makes the image opts describe in b and returns its manifest
// descriptor, with Platform set. Blobs already in b are left as they are.
func Write(ctx context.Context, b store.Blobs, opts Options) (ocispec.Descriptor, error) {
	o, err := opts.normalize()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("make test image: %w", err)
	}
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	var history []ocispec.History
	add := func(what string, fill func(*tar.Writer) error) error {
		l, diffID, err := writeLayer(ctx, b, o.Compression, fill)
		if err != nil {
			return fmt.Errorf("make test image: %s: %w", what, err)
		}
		layers, diffIDs = append(layers, l), append(diffIDs, diffID)
		history = append(history, ocispec.History{Created: &Created, CreatedBy: "testimage: " + what})
		return nil
	}
	if o.Dir != "" {
		if err := add("directory "+o.Dir, func(tw *tar.Writer) error { return tarDir(ctx, tw, o.Dir) }); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	if len(o.Files) > 0 {
		if err := add(fmt.Sprintf("%d files", len(o.Files)), func(tw *tar.Writer) error { return tarFiles(tw, o.Files) }); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	for i := range o.Layers {
		fill := func(tw *tar.Writer) error { return tarRandom(ctx, tw, o.Seed, i, o.LayerSize) }
		if err := add(fmt.Sprintf("random layer %d of %d bytes", i, o.LayerSize), fill); err != nil {
			return ocispec.Descriptor{}, err
		}
	}

	cfg := ocispec.Image{
		Created:  &Created,
		Platform: o.Platform,
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: []string{"/bin/sh"},
		},
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
		History: history,
	}
	cfgDesc, err := putJSON(ctx, b, ocispec.MediaTypeImageConfig, cfg)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    layers,
	}
	d, err := putJSON(ctx, b, ocispec.MediaTypeImageManifest, m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	p := o.Platform
	d.Platform = &p
	return d, nil
}

// WriteIndex makes one image per platform, each from opts with that
// platform and its own seed (opts.Seed plus the platform's position), and
// an OCI image index of them with platform fields. It returns the index
// descriptor.
func WriteIndex(ctx context.Context, b store.Blobs, platforms []ocispec.Platform, opts Options) (ocispec.Descriptor, error) {
	if len(platforms) == 0 {
		return ocispec.Descriptor{}, errors.New("make test index: no platforms")
	}
	seen := map[string]bool{}
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
	}
	for i, p := range platforms {
		if p.OS == "" || p.Architecture == "" {
			return ocispec.Descriptor{}, fmt.Errorf("make test index: platform %d: want both os and architecture, have %q", i, manifest.FormatPlatform(p))
		}
		name := manifest.FormatPlatform(manifest.Normalize(p))
		if seen[name] {
			return ocispec.Descriptor{}, fmt.Errorf("make test index: platform %s given twice", name)
		}
		seen[name] = true
		o := opts
		o.Platform, o.Seed = p, opts.Seed+int64(i)
		d, err := Write(ctx, b, o)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("make test index for %s: %w", name, err)
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	return putJSON(ctx, b, ocispec.MediaTypeImageIndex, idx)
}

// normalize checks opts and fills in the defaults.
func (opts Options) normalize() (Options, error) {
	o := opts
	switch {
	case o.Layers < 0:
		return o, fmt.Errorf("layers %d: must not be negative", o.Layers)
	case o.LayerSize < 0:
		return o, fmt.Errorf("layer size %d: must not be negative", o.LayerSize)
	}
	if o.Layers == 0 && o.Dir == "" && len(o.Files) == 0 {
		o.Layers = 1
	}
	if o.LayerSize == 0 {
		o.LayerSize = DefaultLayerSize
	}
	switch o.Compression {
	case "":
		o.Compression = Gzip
	case Gzip, None:
	default:
		return o, fmt.Errorf("compression %q: want %s or %s", o.Compression, Gzip, None)
	}
	switch {
	case o.Platform.OS == "" && o.Platform.Architecture == "":
		o.Platform = manifest.Native()
	case o.Platform.OS == "" || o.Platform.Architecture == "":
		return o, fmt.Errorf("platform %q: want both os and architecture", manifest.FormatPlatform(o.Platform))
	default:
		o.Platform = manifest.Normalize(o.Platform)
	}
	return o, nil
}

// writeLayer streams the tar that fill writes, compressed as compression
// says, into a new blob of b. The tar is hashed (diffID) on its way into
// the compressor, and the blob (digest, size) by the store writer, in the
// same pass.
func writeLayer(ctx context.Context, b store.Blobs, compression string, fill func(*tar.Writer) error) (ocispec.Descriptor, digest.Digest, error) {
	w, err := b.Writer(ctx)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer w.Cancel()
	bw := bufio.NewWriterSize(w, 256<<10)
	mediaType := ocispec.MediaTypeImageLayer
	var tarDst io.Writer = bw
	var gz *gzip.Writer
	if compression == Gzip {
		mediaType = ocispec.MediaTypeImageLayerGzip
		if gz, err = gzip.NewWriterLevel(bw, gzip.BestSpeed); err != nil {
			return ocispec.Descriptor{}, "", fmt.Errorf("start compressor: %w", err)
		}
		tarDst = gz
	}
	diff := digest.SHA256.Digester()
	tw := tar.NewWriter(io.MultiWriter(diff.Hash(), tarDst))
	if err := fill(tw); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("write tar: %w", err)
	}
	if err := tw.Close(); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("finish tar: %w", err)
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return ocispec.Descriptor{}, "", fmt.Errorf("finish gzip: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("write layer blob: %w", err)
	}
	d, err := w.Commit(ctx, ocispec.Descriptor{MediaType: mediaType})
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	return d, diff.Digest(), nil
}

// putJSON stores v as a JSON blob of media type mt.
func putJSON(ctx context.Context, b store.Blobs, mt string, v any) (ocispec.Descriptor, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode %s: %w", mt, err)
	}
	d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if err := store.Put(ctx, b, d, bytes.NewReader(raw)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store %s: %w", mt, err)
	}
	return d, nil
}

// rng returns the ChaCha8 stream of layer i of the image seeded by seed.
func rng(seed int64, layer int) *rand.ChaCha8 {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], uint64(seed))
	binary.LittleEndian.PutUint64(key[8:], uint64(layer))
	copy(key[16:], "imgtool/testimage")
	return rand.NewChaCha8(key)
}
