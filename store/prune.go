package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imgtool/imgtool/internal/flock"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// PruneReport says what Prune freed.
type PruneReport struct {
	Blobs int
	Bytes int64
}

// Prune deletes every blob that no image in the index reaches, and every
// abandoned ingest. It waits until no other Store is open on this directory
// (they hold gc.lock shared), because a blob committed by a pull in
// progress is unreferenced until that pull names its image.
func (s *Store) Prune(ctx context.Context) (PruneReport, error) {
	return s.PruneWith(ctx, PruneOptions{})
}

// PruneOptions tune PruneWith.
type PruneOptions struct {
	// Keep spares blobs no image reaches but another user of the store
	// (the build cache) still refers to.
	Keep func(digest.Digest) bool
	// NoWait fails with flock.ErrBusy instead of waiting while another
	// process has the store open.
	NoWait bool
}

// PruneWith is Prune that spares what o.Keep reports.
func (s *Store) PruneWith(ctx context.Context, o PruneOptions) (PruneReport, error) {
	if s.readOnly {
		return PruneReport{}, fmt.Errorf("prune %s: %w", s.dir, errReadOnly)
	}
	// Converting our shared lock to exclusive is not atomic in flock(2), but
	// nothing we hold depends on it: we re-read the index under the lock.
	if err := flock.Lock(ctx, s.gc.f, unix.LOCK_EX, !o.NoWait); err != nil {
		s.gc.lock(context.Background(), unix.LOCK_SH)
		return PruneReport{}, fmt.Errorf("prune: wait for other imgtool processes on %s: %w", s.dir, err)
	}
	defer s.gc.lock(context.Background(), unix.LOCK_SH)

	idx, err := s.readIndex()
	if err != nil {
		return PruneReport{}, err
	}
	live := map[digest.Digest]bool{}
	err = Reachable(ctx, s, idx.Manifests, func(d ocispec.Descriptor) error {
		live[d.Digest] = true
		return nil
	})
	if err != nil {
		return PruneReport{}, fmt.Errorf("prune: mark: %w", err)
	}
	var rep PruneReport
	err = s.Walk(ctx, func(d digest.Digest, size int64) error {
		if live[d] || (o.Keep != nil && o.Keep(d)) {
			return nil
		}
		if err := s.Delete(ctx, d); err != nil {
			return err
		}
		rep.Blobs++
		rep.Bytes += size
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("prune: sweep: %w", err)
	}
	return rep, s.clearIngest()
}

// clearIngest removes abandoned ingests (of killed processes). Only safe
// with gc.lock held exclusively.
func (s *Store) clearIngest() error {
	dir := filepath.Join(s.dir, ".imgtool", "ingest")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("prune ingests: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("prune ingests: %w", err)
		}
	}
	return nil
}
