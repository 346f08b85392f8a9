package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/imgtool/imgtool/manifest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReadManifest reads manifest or index content d from b, bounded by
// manifest.MaxManifestSize and checked against d.
func ReadManifest(ctx context.Context, b Blobs, d ocispec.Descriptor) ([]byte, error) {
	if err := manifest.ValidateDescriptor(d); err != nil {
		return nil, err
	}
	rc, err := b.Open(ctx, d.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, manifest.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", d.Digest, err)
	}
	if d.Size != 0 && int64(len(raw)) != d.Size {
		return nil, fmt.Errorf("read manifest %s: %w: %d bytes, want %d", d.Digest, ErrMismatch, len(raw), d.Size)
	}
	return raw, nil
}

// Reachable calls fn once for every descriptor reachable from roots
// (the roots included), parents before children. Children missing from
// the store are passed to fn but not descended into.
func Reachable(ctx context.Context, b Blobs, roots []ocispec.Descriptor, fn func(ocispec.Descriptor) error) error {
	seen := map[string]bool{}
	var visit func(d ocispec.Descriptor) error
	visit = func(d ocispec.Descriptor) error {
		if seen[d.Digest.String()] {
			return nil
		}
		seen[d.Digest.String()] = true
		if err := fn(d); err != nil {
			return err
		}
		if !manifest.IsManifestOrIndex(d.MediaType) {
			return nil
		}
		raw, err := ReadManifest(ctx, b, d)
		if errors.Is(err, ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		children, err := manifest.Children(raw, d.MediaType)
		if err != nil {
			return fmt.Errorf("walk %s: %w", d.Digest, err)
		}
		for _, c := range children {
			if err := visit(c); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range roots {
		if err := visit(r); err != nil {
			return err
		}
	}
	return nil
}

// Size returns the bytes that d and everything it references occupy in
// the store, counting shared blobs once.
func (s *Store) Size(ctx context.Context, d ocispec.Descriptor) (int64, error) {
	var total int64
	err := Reachable(ctx, s, []ocispec.Descriptor{d}, func(c ocispec.Descriptor) error {
		if n, err := s.Stat(ctx, c.Digest); err == nil {
			total += n
		}
		return nil
	})
	return total, err
}

// ImageManifest resolves d (a manifest, or an index from which the
// native platform's manifest is taken) to an image manifest.
func ImageManifest(ctx context.Context, b Blobs, d ocispec.Descriptor) (ocispec.Manifest, error) {
	raw, err := ReadManifest(ctx, b, d)
	if err != nil {
		return ocispec.Manifest{}, err
	}
	if manifest.IsIndex(d.MediaType) {
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return ocispec.Manifest{}, fmt.Errorf("read index %s: %w", d.Digest, err)
		}
		child, err := manifest.Select(idx, manifest.Native())
		if err != nil {
			return ocispec.Manifest{}, err
		}
		return ImageManifest(ctx, b, child)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return ocispec.Manifest{}, fmt.Errorf("read manifest %s: %w", d.Digest, err)
	}
	return m, nil
}
