package unpack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// maxPromoteHeld bounds the chains Prune holds leases on (one descriptor
// each) for one sync.
const maxPromoteHeld = 512

// staleMark says whether chain is marked by another boot, which makes it
// garbage. Without this boot's ID nothing is known to be stale.
func (t tree) staleMark(chain digest.Digest) bool {
	if t.d.boot == "" {
		return false
	}
	m, _, err := t.mark(chain)
	return err == nil && m == stale
}

// promoteAll syncs the file system once and unmarks every chain of this
// boot that trees hold. Each is leased without waiting while it is
// synced and unmarked, so that it cannot be removed and published again,
// marked anew, in between; a chain being built is left marked.
func (c *Cache) promoteAll(ctx context.Context, trees []tree) error {
	if c.d.boot == "" {
		return nil
	}
	type held struct {
		t     tree
		chain digest.Digest
		lk    *flock
	}
	var batch []held
	flush := func() error {
		defer func() {
			for _, h := range batch {
				h.lk.close()
			}
			batch = batch[:0]
		}()
		if len(batch) == 0 {
			return nil
		}
		if err := syncFS(c.dir); err != nil {
			return err
		}
		byTree := map[tree][]digest.Digest{}
		for _, h := range batch {
			byTree[h.t] = append(byTree[h.t], h.chain)
		}
		for t, chains := range byTree {
			t.unmark(chains)
		}
		return nil
	}
	defer flush() // on an early return: releases the leases
	for _, t := range trees {
		entries, err := os.ReadDir(filepath.Join(t.dir, "unsynced"))
		if err != nil && !errors.Is(err, os.ErrNotExist) { // none in a tree older versions made
			return fmt.Errorf("sync unpack cache %s: %w", c.dir, err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			chain := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
			if chain.Validate() != nil {
				continue
			}
			if _, err := os.Lstat(t.chainDir(chain)); err != nil {
				continue // a crash's leftover, or a chain being published
			}
			lk, err := lockFile(ctx, t.lockPath(chain), unix.LOCK_SH, false)
			if errors.Is(err, errBusy) {
				continue
			}
			if err != nil {
				return fmt.Errorf("sync unpack cache %s: %w", c.dir, err)
			}
			_, gone := os.Lstat(t.chainDir(chain))
			if m, _, err := t.mark(chain); gone != nil || err != nil || m != thisBoot {
				lk.close()
				continue
			}
			batch = append(batch, held{t, chain, lk})
			if len(batch) == maxPromoteHeld {
				if err := flush(); err != nil {
					return fmt.Errorf("sync unpack cache %s: %w", c.dir, err)
				}
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("sync unpack cache %s: %w", c.dir, err)
	}
	return nil
}

// cleanMarkers removes the markers of chains that are not in the cache:
// a crash between a chain's removal and its marker's leaves one. A marker
// is made before its chain is published, under the chain's lock, which
// is why the lock is taken before the chain is found missing.
func (t tree) cleanMarkers(ctx context.Context) error {
	entries, err := os.ReadDir(filepath.Join(t.dir, "unsynced"))
	if err != nil && !errors.Is(err, os.ErrNotExist) { // none in a tree older versions made
		return err
	}
	for _, e := range entries {
		chain := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if chain.Validate() != nil {
			continue // not ours
		}
		if _, err := os.Lstat(t.chainDir(chain)); err == nil {
			continue
		}
		lk, err := lockFile(ctx, t.lockPath(chain), unix.LOCK_EX, false)
		if errors.Is(err, errBusy) {
			continue
		}
		if err != nil {
			return err
		}
		if _, err := os.Lstat(t.chainDir(chain)); errors.Is(err, os.ErrNotExist) {
			os.Remove(t.markerPath(chain))
		}
		lk.close()
	}
	return nil
}
