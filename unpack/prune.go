package unpack

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Prune removes, in every ownership mode's tree, the chains keep does not
// want and that no lease holds, and what killed processes left being
// built. It returns the bytes freed: those of files no other chain shares
// a hard link with. It never waits: a chain in use is left for next time.
func (c *Cache) Prune(ctx context.Context, keep func(chainID digest.Digest) bool) (int64, error) {
	var freed int64
	var errs []error
	for _, rootless := range []bool{false, true} {
		t := tree(filepath.Join(c.dir, modeDir(rootless)))
		if _, err := os.Stat(string(t)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		n, err := t.prune(ctx, keep)
		freed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return freed, fmt.Errorf("prune unpack cache %s: %w", c.dir, err)
	}
	return freed, nil
}

func (t tree) prune(ctx context.Context, keep func(digest.Digest) bool) (int64, error) {
	entries, err := os.ReadDir(filepath.Join(string(t), "chains"))
	if err != nil {
		return 0, err
	}
	var freed int64
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return freed, err
		}
		chain := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if chain.Validate() == nil && keep(chain) {
			continue
		}
		n, err := t.remove(ctx, chain, e.Name())
		freed += n
		if err != nil {
			return freed, err
		}
	}
	if err := t.cleanStaging(ctx); err != nil {
		return freed, err
	}
	t.cleanSiblings()
	return freed, t.cleanLocks(ctx)
}

// remove removes chain (named name under chains/) unless it is leased or
// being built. It is moved into staging first, so that a Prune killed
// midway leaves it where the next one finishes the job.
func (t tree) remove(ctx context.Context, chain digest.Digest, name string) (int64, error) {
	lockPath := filepath.Join(string(t), "locks", name)
	lk, err := lockFile(ctx, lockPath, unix.LOCK_EX, false)
	if errors.Is(err, errBusy) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer lk.close()
	dir := filepath.Join(string(t), "chains", name)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, nil // another Prune was first
	}
	size := exclusiveSize(dir)
	trash, err := t.stagingDir(chain)
	if err != nil {
		return 0, err
	}
	if err := os.Rename(dir, trash); err != nil {
		return 0, fmt.Errorf("remove chain %s: %w", name, err)
	}
	removeStaging(trash)
	// Unlinked while held: a process that opened it before sees another
	// file at the path once it gets the lock, and takes that one.
	os.Remove(lockPath)
	return size, nil
}

// exclusiveSize is the disk space of dir that removing it frees: files
// whose every link is inside it, and the directories themselves.
func exclusiveSize(dir string) int64 {
	type file struct {
		seen   uint64
		nlink  uint64
		blocks int64
	}
	files := map[fileID]*file{}
	var size int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		var st unix.Stat_t
		if err != nil || unix.Lstat(p, &st) != nil {
			return nil
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Nlink <= 1 {
			size += st.Blocks * 512
			return nil
		}
		id := fileID{uint64(st.Dev), st.Ino}
		f := files[id]
		if f == nil {
			f = &file{nlink: uint64(st.Nlink), blocks: st.Blocks * 512}
			files[id] = f
		}
		f.seen++
		return nil
	})
	for _, f := range files {
		if f.seen >= f.nlink {
			size += f.blocks
		}
	}
	return size
}

// cleanStaging removes the staging directories of builds and removals
// that no live process holds the chain's lock for (a killed process's
// flock goes with it).
func (t tree) cleanStaging(ctx context.Context) error {
	entries, err := os.ReadDir(filepath.Join(string(t), "staging"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		hexPart, _, _ := strings.Cut(e.Name(), "-")
		chain := digest.NewDigestFromEncoded(digest.SHA256, hexPart)
		if chain.Validate() != nil {
			continue // not ours
		}
		lk, err := lockFile(ctx, t.lockPath(chain), unix.LOCK_EX, false)
		if errors.Is(err, errBusy) {
			continue // still being built
		}
		if err != nil {
			return err
		}
		removeStaging(filepath.Join(string(t), "staging", e.Name()))
		lk.close()
	}
	return nil
}

// cleanLocks removes the lock files of chains that are not in the cache
// (leases of missing chains create them).
func (t tree) cleanLocks(ctx context.Context) error {
	entries, err := os.ReadDir(filepath.Join(string(t), "locks"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, err := os.Lstat(filepath.Join(string(t), "chains", e.Name())); err == nil {
			continue
		}
		p := filepath.Join(string(t), "locks", e.Name())
		lk, err := lockFile(ctx, p, unix.LOCK_EX, false)
		if errors.Is(err, errBusy) {
			continue
		}
		if err != nil {
			return err
		}
		if _, err := os.Lstat(filepath.Join(string(t), "chains", e.Name())); errors.Is(err, os.ErrNotExist) {
			os.Remove(p)
		}
		lk.close()
	}
	return nil
}
