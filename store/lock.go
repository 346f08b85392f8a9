package store

import (
	"context"
	"fmt"
	"os"

	"github.com/imgtool/imgtool/internal/flock"
	"golang.org/x/sys/unix"
)

// lockFile is a flock(2) on a file. flock locks belong to the open file
// description, so two Stores in one process exclude each other just as two
// processes do.
type lockFile struct{ f *os.File }

func openLock(path string) (*lockFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	return &lockFile{f: f}, nil
}

// lock takes the lock (how = unix.LOCK_SH or unix.LOCK_EX), waiting until it
// is free or ctx is done.
func (l *lockFile) lock(ctx context.Context, how int) error {
	return flock.Lock(ctx, l.f, how, true)
}

func (l *lockFile) unlock() error { return unix.Flock(int(l.f.Fd()), unix.LOCK_UN) }

func (l *lockFile) close() error { return l.f.Close() }
