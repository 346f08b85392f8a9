package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Source offers images.
type Source interface {
	// Images lists the images the source offers: the one its location
	// names, or every image of an archive or layout given without one.
	Images(ctx context.Context) ([]store.Image, error)
	// Fetch opens the content of d (a manifest, config or layer).
	Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error)
	Close() error
}

// Opener opens a blob's content; it may be called again to retry.
type Opener func() (io.ReadCloser, error)

// Destination receives images.
type Destination interface {
	// Has reports whether d is already there (for a manifest: with
	// everything it references).
	Has(ctx context.Context, d ocispec.Descriptor) (bool, error)
	// Write stores the content of d, verifying it against d.
	Write(ctx context.Context, d ocispec.Descriptor, open Opener) error
	// Tag names manifest d (whose content is raw) as name. The name is a
	// reference, or "" when the image is to stay unnamed.
	Tag(ctx context.Context, name string, d ocispec.Descriptor, raw []byte) error
	// Close finishes the destination (an archive is only complete and
	// visible after a successful Close) and releases it. After an error
	// from Copy, call Abort instead.
	Close() error
	// Abort discards what an unfinished destination holds, when it can.
	Abort() error
}

// Options tune a copy.
type Options struct {
	// Platform selects the image of a multi-platform index (zero: native).
	Platform ocispec.Platform
	// AllPlatforms copies an index whole.
	AllPlatforms bool
	// Jobs bounds the blobs moved at once (zero: 4, or the CPU count if larger).
	Jobs int
	// Progress follows each blob (nil: none).
	Progress Progress
}

func (o Options) withDefaults() Options {
	if o.Platform.OS == "" {
		o.Platform = manifest.Native()
	}
	if o.Jobs <= 0 {
		o.Jobs = max(4, runtime.NumCPU())
	}
	if o.Progress == nil {
		o.Progress = nopProgress{}
	}
	return o
}

// Copy copies image from src to dst and names it name there. It returns
// the descriptor of what was copied: with an index and no AllPlatforms,
// the chosen platform's manifest.
func Copy(ctx context.Context, src Source, dst Destination, image store.Image, name string, opts Options) (ocispec.Descriptor, error) {
	opts = opts.withDefaults()
	d := image.Descriptor
	raw, err := fetchManifest(ctx, src, d)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if manifest.IsIndex(d.MediaType) && !opts.AllPlatforms {
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("read index %s: %w: %v", d.Digest, manifest.ErrInvalid, err)
		}
		if d, err = manifest.Select(idx, opts.Platform); err != nil {
			return ocispec.Descriptor{}, err
		}
		if raw, err = fetchManifest(ctx, src, d); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	c := copier{src: src, dst: dst, opts: opts}
	if err := c.tree(ctx, d, raw); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := dst.Tag(ctx, name, d, raw); err != nil {
		return ocispec.Descriptor{}, err
	}
	return d, nil
}

type copier struct {
	src  Source
	dst  Destination
	opts Options
}

// tree copies manifest or index d, whose content is raw, children first.
func (c copier) tree(ctx context.Context, d ocispec.Descriptor, raw []byte) error {
	if ok, err := c.dst.Has(ctx, d); err != nil {
		return err
	} else if ok {
		return nil
	}
	if manifest.IsIndex(d.MediaType) {
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return fmt.Errorf("read index %s: %w: %v", d.Digest, manifest.ErrInvalid, err)
		}
		for _, child := range idx.Manifests {
			if err := manifest.ValidateDescriptor(child); err != nil {
				return err
			}
			if !manifest.IsManifestOrIndex(child.MediaType) {
				if err := c.blobs(ctx, []ocispec.Descriptor{child}); err != nil {
					return err
				}
				continue
			}
			childRaw, err := fetchManifest(ctx, c.src, child)
			if err != nil {
				return err
			}
			if err := c.tree(ctx, child, childRaw); err != nil {
				return err
			}
		}
	} else {
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("read manifest %s: %w: %v", d.Digest, manifest.ErrInvalid, err)
		}
		blobs := append([]ocispec.Descriptor{m.Config}, m.Layers...)
		for _, b := range blobs {
			if err := manifest.ValidateDescriptor(b); err != nil {
				return err
			}
		}
		if err := c.blobs(ctx, blobs); err != nil {
			return err
		}
	}
	return c.dst.Write(ctx, d, func() (io.ReadCloser, error) { return io.NopCloser(bytesReader(raw)), nil })
}

// blobs copies blobs concurrently, skipping those the destination has.
func (c copier) blobs(ctx context.Context, blobs []ocispec.Descriptor) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Jobs)
	seen := map[digest.Digest]bool{}
	for _, b := range blobs {
		if seen[b.Digest] {
			continue
		}
		seen[b.Digest] = true
		g.Go(func() error { return c.blob(ctx, b) })
	}
	return g.Wait()
}

func (c copier) blob(ctx context.Context, b ocispec.Descriptor) error {
	p := c.opts.Progress.Blob(b)
	if manifest.IsNonDistributable(b.MediaType) {
		p.Skipped("non-distributable")
		return nil
	}
	has, err := c.dst.Has(ctx, b)
	if err != nil {
		p.Done(err)
		return err
	}
	if has {
		p.Skipped("exists")
		return nil
	}
	err = c.dst.Write(ctx, b, func() (io.ReadCloser, error) {
		rc, err := c.src.Fetch(ctx, b)
		if err != nil {
			return nil, err
		}
		return countingReader{ReadCloser: rc, p: p}, nil
	})
	if errors.Is(err, ErrExists) {
		p.Skipped("exists")
		return nil
	}
	p.Done(err)
	return err
}

// fetchManifest reads manifest d from src, bounded and verified.
func fetchManifest(ctx context.Context, src Source, d ocispec.Descriptor) ([]byte, error) {
	if err := manifest.ValidateDescriptor(d); err != nil {
		return nil, err
	}
	if !manifest.IsManifestOrIndex(d.MediaType) {
		return nil, fmt.Errorf("read manifest %s: media type %q is not an image manifest or index", d.Digest, d.MediaType)
	}
	rc, err := src.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, manifest.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", d.Digest, err)
	}
	if got := d.Digest.Algorithm().FromBytes(raw); got != d.Digest {
		return nil, fmt.Errorf("read manifest %s: %w: content hashes to %s", d.Digest, store.ErrMismatch, got)
	}
	return raw, nil
}
