package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imgtool/imgtool/internal/atomicfile"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Sentinel errors callers may test with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrMismatch = errors.New("content does not match its descriptor")
)

// Store is an OCI image layout on local disk, safe for concurrent use by
// goroutines and by other processes opening the same directory.
type Store struct {
	dir      string
	readOnly bool
	gc       *lockFile
	index    *lockFile
}

var errReadOnly = errors.New("layout opened read-only")

// Open opens the store in dir, creating an empty layout when dir does not
// hold one. The Store holds a shared lock until Close, which keeps Prune of
// other processes from sweeping blobs this one is about to reference.
func Open(ctx context.Context, dir string) (*Store, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	for _, d := range []string{filepath.Join(dir, "blobs"), filepath.Join(dir, ".imgtool", "ingest")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	s := &Store{dir: dir}
	if s.gc, err = openLock(filepath.Join(dir, ".imgtool", "gc.lock")); err != nil {
		return nil, err
	}
	if s.index, err = openLock(filepath.Join(dir, ".imgtool", "index.lock")); err != nil {
		s.gc.close()
		return nil, err
	}
	if err := s.gc.lock(ctx, unix.LOCK_SH); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.initLayout(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// OpenReadOnly opens an existing OCI image layout in dir (written by imgtool
// or any other tool) for reading only: it creates nothing and takes no lock.
func OpenReadOnly(dir string) (*Store, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open layout %s: %w", dir, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, ocispec.ImageLayoutFile))
	if err != nil {
		return nil, fmt.Errorf("open layout %s: not an OCI image layout: %w", dir, err)
	}
	var l ocispec.ImageLayout
	if err := json.Unmarshal(raw, &l); err != nil || l.Version == "" {
		return nil, fmt.Errorf("open layout %s: malformed %s", dir, ocispec.ImageLayoutFile)
	}
	return &Store{dir: dir, readOnly: true}, nil
}

// Dir returns the absolute directory of the layout.
func (s *Store) Dir() string { return s.dir }

// Close releases the store's locks.
func (s *Store) Close() error {
	if s.readOnly {
		return nil
	}
	return errors.Join(s.gc.close(), s.index.close())
}

// initLayout writes oci-layout and an empty index.json when missing, under
// the index lock so that two first opens do not race.
func (s *Store) initLayout(ctx context.Context) error {
	if err := s.index.lock(ctx, unix.LOCK_EX); err != nil {
		return err
	}
	defer s.index.unlock()
	layout := filepath.Join(s.dir, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layout); errors.Is(err, os.ErrNotExist) {
		raw, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := writeFileAtomic(layout, raw); err != nil {
			return fmt.Errorf("init store %s: %w", s.dir, err)
		}
	} else if err != nil {
		return fmt.Errorf("init store %s: %w", s.dir, err)
	}
	if _, err := os.Stat(s.indexPath()); errors.Is(err, os.ErrNotExist) {
		return s.writeIndex(emptyIndex())
	} else if err != nil {
		return fmt.Errorf("init store %s: %w", s.dir, err)
	}
	return nil
}

// writeFileAtomic replaces path with data, synced, so readers see the old
// content or the new, never a mix.
func writeFileAtomic(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, 0o644)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
