package writebehind

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback queues s's dirty pages for writing, without waiting.
func startWriteback(f *os.File, s span) error {
	return unix.SyncFileRange(int(f.Fd()), s.off, s.n, unix.SYNC_FILE_RANGE_WRITE)
}

// awaitWriteback writes s's dirty pages and waits until they are on disk
// (the data only: the fsync of Commit makes the file's metadata durable).
func awaitWriteback(f *os.File, s span) error {
	if s.n == 0 {
		return nil
	}
	return unix.SyncFileRange(int(f.Fd()), s.off, s.n,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
}
