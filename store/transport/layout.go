package transport

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/imgtool/imgtool/store"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layoutSource reads from the local store or any OCI image layout.
type layoutSource struct {
	s     *store.Store
	ref   string
	close bool
}

// NewStoreSource offers image ref of the local store s (which the caller
// keeps open and closes).
func NewStoreSource(s *store.Store, ref string) Source { return &layoutSource{s: s, ref: ref} }

func openLayoutSource(loc Location) (Source, error) {
	s, err := store.OpenReadOnly(loc.Path)
	if err != nil {
		return nil, err
	}
	return &layoutSource{s: s, ref: loc.Ref, close: true}, nil
}

func (l *layoutSource) Images(ctx context.Context) ([]store.Image, error) {
	if l.ref != "" {
		im, err := l.s.Resolve(ctx, l.ref)
		if err != nil {
			return nil, err
		}
		return []store.Image{im}, nil
	}
	all, err := l.s.List(ctx)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("layout %s: %w: it holds no images", l.s.Dir(), store.ErrNotFound)
	}
	return all, nil
}

func (l *layoutSource) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return l.s.Open(ctx, d.Digest)
}

func (l *layoutSource) Close() error {
	if l.close {
		return l.s.Close()
	}
	return nil
}

// layoutDest writes into the local store or an OCI image layout directory.
type layoutDest struct {
	s *store.Store
	// verbatim keeps names as given (OCI layouts for other tools) rather
	// than normalizing them to full references (the imgtool store).
	verbatim bool
	close    bool
}

// NewStoreDestination writes into the local store s (which the caller
// keeps open and closes).
func NewStoreDestination(s *store.Store) Destination { return &layoutDest{s: s} }

func openLayoutDest(ctx context.Context, loc Location) (Destination, error) {
	s, err := store.Open(ctx, loc.Path)
	if err != nil {
		return nil, err
	}
	return &layoutDest{s: s, verbatim: true, close: true}, nil
}

func (l *layoutDest) Has(ctx context.Context, d ocispec.Descriptor) (bool, error) {
	_, err := l.s.Stat(ctx, d.Digest)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (l *layoutDest) Write(ctx context.Context, d ocispec.Descriptor, open Opener) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return store.Put(ctx, l.s, d, rc)
}

func (l *layoutDest) Tag(ctx context.Context, name string, d ocispec.Descriptor, _ []byte) error {
	if l.verbatim {
		return l.s.SetName(ctx, name, d)
	}
	return l.s.Set(ctx, name, d)
}

func (l *layoutDest) Close() error {
	if l.close {
		return l.s.Close()
	}
	return nil
}

// Abort leaves committed blobs in place: each is whole and verified, so
// the next copy reuses them instead of fetching them again.
func (l *layoutDest) Abort() error { return l.Close() }
