package unpack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// errBusy is a lock another open file description holds.
var errBusy = errors.New("locked by another imgtool process")

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

// lock takes or converts the lock. Polling with LOCK_NB keeps the wait
// cancellable.
func (l *flock) lock(ctx context.Context, how int, wait bool) error {
	delay := time.Millisecond
	for {
		err := unix.Flock(int(l.f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			return fmt.Errorf("lock %s: %w", l.f.Name(), err)
		}
		if !wait && err == unix.EWOULDBLOCK {
			return fmt.Errorf("lock %s: %w", l.f.Name(), errBusy)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock %s: %w", l.f.Name(), ctx.Err())
		case <-time.After(delay):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// close drops the lock with the descriptor.
func (l *flock) close() error { return l.f.Close() }
