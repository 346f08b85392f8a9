package unpack

import (
	"context"
	"fmt"
	"os"

	iflock "github.com/imgtool/imgtool/internal/flock"
	"golang.org/x/sys/unix"
)

// errBusy is a lock another open file description holds.
var errBusy = iflock.ErrBusy

// flock is a flock(2) on a chain's lock file. flock locks belong to the
// open file description, so two Caches in one process exclude each other
// just as two processes do, and a killed process's locks go with it.
type flock struct{ f *os.File }

// maxLockTries bounds the reopening of a lock file that Prune removed
// between our open and our lock.
const maxLockTries = 100

// lockFile opens path (creating it) and locks it (how = unix.LOCK_SH or
// unix.LOCK_EX), waiting while ctx allows, or failing with errBusy at once
// unless wait. A lock taken on a file Prune has since unlinked guards
// nothing, so it is retaken on the file now at path.
func lockFile(ctx context.Context, path string, how int, wait bool) (*flock, error) {
	for range maxLockTries {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open lock %s: %w", path, err)
		}
		l := &flock{f: f}
		if err := l.lock(ctx, how, wait); err != nil {
			f.Close()
			return nil, err
		}
		if l.current(path) {
			return l, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("lock %s: it kept being removed", path)
}

// current says whether l's file is still the one at path.
func (l *flock) current(path string) bool {
	var held, now unix.Stat_t
	if unix.Fstat(int(l.f.Fd()), &held) != nil || unix.Stat(path, &now) != nil {
		return false
	}
	return held.Dev == now.Dev && held.Ino == now.Ino
}

// lock takes or converts the lock (see flock.Lock).
func (l *flock) lock(ctx context.Context, how int, wait bool) error {
	return iflock.Lock(ctx, l.f, how, wait)
}

// close drops the lock with the descriptor.
func (l *flock) close() error { return l.f.Close() }
