// Package flock takes advisory file locks (flock(2)) with a wait that a
// context can cancel. The store's index and gc locks and the unpack
// cache's chain locks share it.
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrBusy is a lock another open file description holds, returned when
// Lock is told not to wait.
var ErrBusy = errors.New("locked by another imgtool process")

// Lock takes (or converts to) how, unix.LOCK_SH or unix.LOCK_EX, on f:
// waiting while ctx allows, or failing with ErrBusy at once when wait is
// false. Polling with LOCK_NB keeps the wait cancellable, which a
// blocking flock is not.
func Lock(ctx context.Context, f *os.File, how int, wait bool) error {
	delay := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if !wait && err == unix.EWOULDBLOCK {
			return fmt.Errorf("lock %s: %w", f.Name(), ErrBusy)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock %s: %w", f.Name(), ctx.Err())
		case <-time.After(delay):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}
