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
// want and that no lease holds, those written during another boot and
// never synced (they would be built again before any use), and what
// killed processes left being built; then it syncs the chains written
// during this boot, so that they survive a reboot. It returns the bytes
// freed: those of files no other chain shares a hard link with. It never
// waits: a chain in use is left for next time.
func (c *Cache) Prune(ctx context.Context, keep func(chainID digest.Digest) bool) (int64, error) {
	var freed int64
	var errs []error
	var trees []tree
	for _, rootless := range []bool{false, true} {
		t := c.tree(rootless)
		if _, err := os.Stat(t.dir); errors.Is(err, os.ErrNotExist) {
			continue
		}
		trees = append(trees, t)
		n, err := t.prune(ctx, keep)
		freed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.promoteAll(ctx, trees); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return freed, fmt.Errorf("prune unpack cache %s: %w", c.dir, err)
	}
	return freed, nil
}

func (t tree) prune(ctx context.Context, keep func(digest.Digest) bool) (int64, error) {
	entries, err := os.ReadDir(filepath.Join(t.dir, "chains"))
	if err != nil {
		return 0, err
	}
	var freed int64
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return freed, err
		}
		chain := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		kept := chain.Validate() == nil && keep(chain)
		if kept && !t.staleMark(chain) {
			continue
		}
		n, err := t.remove(ctx, chain, e.Name(), kept)
		freed += n
		if err != nil {
			return freed, err
		}
	}
	if err := t.cleanStaging(ctx); err != nil {
		return freed, err
	}
	t.cleanSiblings()
	if err := t.cleanMarkers(ctx); err != nil {
		return freed, err
	}
	return freed, t.cleanLocks(ctx)
}

// remove removes chain (named name under chains/) unless it is leased or
// being built, or, with staleOnly, unless it is marked by another boot.
// It is moved into staging first, so that a Prune killed midway leaves it
// where the next one finishes the job.
func (t tree) remove(ctx context.Context, chain digest.Digest, name string, staleOnly bool) (int64, error) {
	lockPath := filepath.Join(t.dir, "locks", name)
	lk, err := lockFile(ctx, lockPath, unix.LOCK_EX, false)
	if errors.Is(err, errBusy) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer lk.close()
	dir := filepath.Join(t.dir, "chains", name)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, nil // another Prune was first
	}
	if staleOnly && !t.staleMark(chain) {
		return 0, nil // built again meanwhile
	}
	size := exclusiveSize(dir)
	if err := t.discard(chain); err != nil {
		return 0, err
	}
	// Unlinked while held: a process that opened it before sees another
	// file at the path once it gets the lock, and takes that one.
	os.Remove(lockPath)
	return size, nil
}

// discard removes chain's entry and then its marker (a chain never goes
// without its marker; a marker left alone by a crash is cleaned by
// cleanMarkers, or replaced when the chain is published again). The
// caller holds the chain's lock exclusively.
func (t tree) discard(chain digest.Digest) error {
	trash, err := t.stagingDir(chain)
	if err != nil {
		return err
	}
	if err := os.Rename(t.chainDir(chain), trash); err != nil {
		return fmt.Errorf("remove chain %s: %w", chain.Encoded(), err)
	}
	removeStaging(trash)
	if err := os.Remove(t.markerPath(chain)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove chain %s: %w", chain.Encoded(), err)
	}
	return nil
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
	entries, err := os.ReadDir(filepath.Join(t.dir, "staging"))
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
		removeStaging(filepath.Join(t.dir, "staging", e.Name()))
		lk.close()
	}
	return nil
}

// cleanLocks removes the lock files of chains that are not in the cache
// (leases of missing chains create them).
func (t tree) cleanLocks(ctx context.Context) error {
	entries, err := os.ReadDir(filepath.Join(t.dir, "locks"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, err := os.Lstat(filepath.Join(t.dir, "chains", e.Name())); err == nil {
			continue
		}
		p := filepath.Join(t.dir, "locks", e.Name())
		lk, err := lockFile(ctx, p, unix.LOCK_EX, false)
		if errors.Is(err, errBusy) {
			continue
		}
		if err != nil {
			return err
		}
		if _, err := os.Lstat(filepath.Join(t.dir, "chains", e.Name())); errors.Is(err, os.ErrNotExist) {
			os.Remove(p)
		}
		lk.close()
	}
	return nil
}
