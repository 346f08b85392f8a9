package store

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

func (s *Store) indexPath() string { return filepath.Join(s.dir, ocispec.ImageIndexFile) }

func emptyIndex() ocispec.Index {
	return ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{},
	}
}

// readIndex reads index.json. It needs no lock: the file is only ever
// replaced by rename, so a reader sees one whole version.
func (s *Store) readIndex() (ocispec.Index, error) {
	raw, err := os.ReadFile(s.indexPath())
	if err != nil {
		return ocispec.Index{}, fmt.Errorf("read store index: %w", err)
	}
	idx := emptyIndex()
	if err := json.Unmarshal(raw, &idx); err != nil {
		return ocispec.Index{}, fmt.Errorf("read store index %s: %w", s.indexPath(), err)
	}
	return idx, nil
}

func (s *Store) writeIndex(idx ocispec.Index) error {
	raw, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("write store index: %w", err)
	}
	if err := writeFileAtomic(s.indexPath(), append(raw, '\n')); err != nil {
		return fmt.Errorf("write store index: %w", err)
	}
	return nil
}

// updateIndex applies fn to index.json under the exclusive index lock.
// When fn fails, index.json is left as it was.
func (s *Store) updateIndex(ctx context.Context, fn func(*ocispec.Index) error) error {
	if s.readOnly {
		return fmt.Errorf("update index of %s: %w", s.dir, errReadOnly)
	}
	if err := s.index.lock(ctx, unix.LOCK_EX); err != nil {
		return err
	}
	defer s.index.unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := fn(&idx); err != nil {
		return err
	}
	return s.writeIndex(idx)
}
