package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxReferrerDepth bounds how far referrers of referrers are followed
// (a signature of an SBOM attached to an image is depth 2).
const maxReferrerDepth = 4

// saver copies images, and what refers to them, into one destination.
type saver struct {
	store     *store.Store
	env       transport.Env
	dst       transport.Destination
	opts      transport.Options
	referrers bool
	// seen holds name@digest of each entry written, so an image listed
	// twice is written once.
	seen   map[string]bool
	saved  []savedEntry
	nrefs  int
	warned bool
}

type savedEntry struct {
	name   string
	digest digest.Digest
}

// save copies the images ref names: from the local store when it has
// them, else from their registry (or the layout or archive ref names).
func (sv *saver) save(ctx context.Context, ref string) error {
	loc, err := transport.ParseLocation(ref, transport.Store)
	if err != nil {
		return usageError{err}
	}
	if loc.Kind == transport.Store {
		im, err := sv.store.Resolve(ctx, ref)
		if err == nil {
			return sv.copy(ctx, transport.NewStoreSource(sv.store, ""), im, 0)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		fmt.Fprintf(os.Stderr, "Unable to find image %q locally; saving it from its registry\n", ref)
		loc = transport.Location{Kind: transport.Registry, Ref: ref}
	}
	src, err := transport.OpenSource(ctx, loc, sv.env)
	if err != nil {
		return err
	}
	defer src.Close()
	images, err := src.Images(ctx)
	if err != nil {
		return err
	}
	for _, im := range images {
		if err := sv.copy(ctx, src, im, 0); err != nil {
			return err
		}
	}
	return nil
}

// copy writes one image under its name, then its referrers.
func (sv *saver) copy(ctx context.Context, src transport.Source, im store.Image, depth int) error {
	opts := sv.opts
	if depth > 0 {
		opts.AllPlatforms = true // a referrer is kept as it is
	}
	key := im.Name + "@" + im.Descriptor.Digest.String()
	if sv.seen[key] {
		return nil
	}
	d, err := transport.Copy(ctx, src, sv.dst, im, im.Name, opts)
	if err != nil {
		return fmt.Errorf("save %s: %w", displayName(im), err)
	}
	sv.seen[im.Name+"@"+d.Digest.String()], sv.seen[key] = true, true
	sv.saved = append(sv.saved, savedEntry{name: displayName(im), digest: d.Digest})
	if depth > 0 {
		sv.nrefs++
	}
	if !sv.referrers {
		return nil
	}
	return sv.copyReferrers(ctx, src, d, depth)
}

func displayName(im store.Image) string {
	if im.Name == "" {
		return "<none>"
	}
	return im.Name
}

// copyReferrers saves what refers to d and, when d is an index saved
// whole, to each of its manifests (cosign signs either).
func (sv *saver) copyReferrers(ctx context.Context, src transport.Source, d ocispec.Descriptor, depth int) error {
	rs, ok := src.(transport.ReferrersSource)
	if !ok {
		if !sv.warned {
			fmt.Fprintln(os.Stderr, "warning: --with-referrers: referrers are saved from registries only (docker://REF, or a REF the local store lacks); the local store and archives do not index them")
			sv.warned = true
		}
		return nil
	}
	if depth >= maxReferrerDepth {
		return nil
	}
	subjects := []ocispec.Descriptor{d}
	if manifest.IsIndex(d.MediaType) {
		children, err := indexChildren(ctx, src, d)
		if err != nil {
			return err
		}
		subjects = append(subjects, children...)
	}
	for _, subject := range subjects {
		refs, err := rs.Referrers(ctx, subject)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if err := sv.copy(ctx, src, r, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// indexChildren reads index d from src and returns the manifests it lists.
func indexChildren(ctx context.Context, src transport.Source, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	rc, err := src.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, manifest.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read index %s: %w", d.Digest, err)
	}
	if got := d.Digest.Algorithm().FromBytes(raw); got != d.Digest {
		return nil, fmt.Errorf("read index %s: %w: content hashes to %s", d.Digest, store.ErrMismatch, got)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("read index %s: %w: %v", d.Digest, manifest.ErrInvalid, err)
	}
	var out []ocispec.Descriptor
	for _, c := range idx.Manifests {
		if manifest.IsManifestOrIndex(c.MediaType) {
			out = append(out, c)
		}
	}
	return out, nil
}
