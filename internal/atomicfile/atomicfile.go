// Package atomicfile owns imgtool's one way of replacing a file: write a
// temporary file beside it, then rename it over the name, so a reader (or
// a crash) sees the old content or the new and never half of either.
//
// os.CreateTemp is not used because it always creates mode 0600, which
// left `imgtool save`, `export` and `--iidfile` outputs unreadable to
// anyone else; files here are created with a caller-chosen mode that the
// umask filters, as os.Create's are.
package atomicfile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// File is a file being written under a temporary name. Exactly one of
// Commit or Abort ends it; Abort after Commit is a no-op, so callers may
// defer Abort.
type File struct {
	*os.File
	path string
	// NoSync skips the fsync before the rename, for caches whose entries
	// may go missing after a crash but must never be torn.
	NoSync bool
	done   bool
}

// Create opens a new temporary file in path's directory, with mode perm
// less the umask.
func Create(path string, perm os.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// Bounded like os.CreateTemp: a collision on a 64-bit random name is
	// only a leftover from a crash.
	for range 10000 {
		name := filepath.Join(dir, "."+base+".tmp-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		return &File{File: f, path: path}, nil
	}
	return nil, fmt.Errorf("write %s: no free temporary name in %s", path, dir)
}

// Commit syncs the file (unless NoSync), closes it, renames it to its
// final name and syncs the directory so that the rename itself survives a
// crash. On error the temporary file is removed.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("write %s: already committed or aborted", f.path)
	}
	f.done = true
	var err error
	if !f.NoSync {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(f.Name(), f.path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if !f.NoSync {
		if err := syncDir(filepath.Dir(f.path)); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// Abort closes and removes the temporary file; the final name is left as
// it was.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// WriteFile replaces path with data, synced, with mode exactly perm (the
// umask does not apply: state files such as keys and indexes must not
// depend on the caller's shell).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}
