// Package xattr owns listing a file's extended attribute names, which the
// layer writer, the snapshot diff and the unpacker all need: by path
// without following a symlink, or by an open descriptor.
package xattr

import (
	"bytes"
	"errors"

	"golang.org/x/sys/unix"
)

// List is the xattr names of p itself (a symlink's own, not its
// target's); none where the file system has no xattrs.
func List(p string) ([]string, error) {
	return names(func(b []byte) (int, error) { return unix.Llistxattr(p, b) })
}

// ListFd is the xattr names of the file open as fd.
func ListFd(fd int) ([]string, error) {
	return names(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
}

// names calls list with a buffer that grows until the names fit (they
// may grow between calls, hence no size query first).
func names(list func([]byte) (int, error)) ([]string, error) {
	buf := make([]byte, 1024)
	for {
		n, err := list(buf)
		switch {
		case errors.Is(err, unix.ERANGE) && len(buf) < 1<<20:
			buf = make([]byte, len(buf)*4)
			continue
		case errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case err != nil:
			return nil, err
		}
		var out []string
		for _, b := range bytes.Split(buf[:n], []byte{0}) {
			if len(b) > 0 {
				out = append(out, string(b))
			}
		}
		return out, nil
	}
}
