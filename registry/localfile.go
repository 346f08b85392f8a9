package registry

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/imgtool/imgtool/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// The registry's own small local files (htpasswd, TLS key and certificate)
// live outside the storage driver: they belong to this machine, not to the
// shared storage replicas read.

// writeFileAtomic replaces path with data, so readers (a serving
// registry re-reading its htpasswd) see the old file or the new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteFile(path, data, perm)
}

// lockDir holds an exclusive flock on directory dir until the returned
// function is called, so two `imgtool registry user` commands editing one
// file there do not lose each other's change. Locking the directory, not a
// lock file, leaves nothing behind.
func lockDir(path string) (unlock func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// fileStamp tells whether a file changed since it was last read: an
// atomic replacement changes the inode, an in-place edit the size or mtime.
type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
	}
	return s
}

func (s fileStamp) equal(o fileStamp) bool {
	return s.dev == o.dev && s.ino == o.ino && s.size == o.size && s.mtime.Equal(o.mtime)
}
