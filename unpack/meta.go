package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"path"
	"strings"
	"unsafe"

	"github.com/imgtool/imgtool/internal/rootlesscontainers"
	"golang.org/x/sys/unix"
)

// Metadata: owners, modes, xattrs and times, set only on what this layer
// made (a directory it merges into is a copy of the parent chain's, never
// a shared inode).

// closeOpened gives the directories writable opened up their modes back,
// except those this layer lists (finishDirs set theirs).
func (a *applier) closeOpened(done map[string]bool) {
	for i := len(a.opened) - 1; i >= 0; i-- {
		d := a.opened[i]
		if done[d.rel] {
			continue
		}
		done[d.rel] = true
		fd, err := a.openInRoot(d.rel, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			continue
		}
		unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), uint32(d.h.Mode))
		unix.Close(fd)
	}
}

// notes collects what a metadata setter skipped, for Report.Warnings.
type notes []string

func (n *notes) add(format string, args ...any) { *n = append(*n, fmt.Sprintf(format, args...)) }

// ownerNeeded says whether an entry this layer just made in the cached
// directory needs its owner set (or, rootless, recorded). It is made with
// the process's euid, and its egid unless the directory's group differs (a
// setgid directory, or a grpid mount, hands its own group down).
func (a *applier) ownerNeeded(h *tar.Header) bool {
	if a.o.Rootless {
		return h.Uid != 0 || h.Gid != 0
	}
	return h.Uid != a.euid || h.Gid != a.egid || a.dirGid() != a.egid
}

// owner gives parent/base, just made, its owner.
func (a *applier) owner(parent int, base, rel string, h *tar.Header) error {
	if !a.ownerNeeded(h) {
		return nil
	}
	return a.chown(parent, base, rel, h)
}

// chown sets or records parent/base's owner, whatever it has now.
func (a *applier) chown(parent int, base, rel string, h *tar.Header) error {
	var n notes
	err := setOwner(parent, base, -1, h, a.o.Rootless, &n)
	a.warnAll(rel, n)
	return err
}

// dirGid is the group of the cached directory, -1 if it cannot be read.
func (a *applier) dirGid() int {
	if a.cache.gid < 0 {
		var st unix.Stat_t
		if unix.Fstat(a.cache.fd, &st) != nil {
			return -1
		}
		a.cache.gid = int(st.Gid)
	}
	return a.cache.gid
}

// setOwner chowns parent/base (fd instead, when it is not -1) when the
// process may, and otherwise records the owner in the
// user.rootlesscontainers xattr, which the layer writer reads back.
func setOwner(parent int, base string, fd int, h *tar.Header, rootless bool, n *notes) error {
	if !rootless {
		var err error
		if fd >= 0 {
			err = unix.Fchown(fd, h.Uid, h.Gid)
		} else {
			err = unix.Fchownat(parent, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EPERM) {
			return err
		}
		// An id our user namespace does not map: record it instead.
	}
	if h.Uid == 0 && h.Gid == 0 {
		return nil
	}
	if h.Typeflag == tar.TypeSymlink {
		n.add("owner %d:%d not recorded: symlinks cannot hold user xattrs", h.Uid, h.Gid)
		return nil
	}
	val := rootlesscontainers.Encode(rootlesscontainers.Resource{UID: uint32(h.Uid), GID: uint32(h.Gid)})
	var err error
	if fd >= 0 {
		err = unix.Fsetxattr(fd, rootlesscontainers.Xattr, val, 0)
	} else {
		err = setXattrAt(parent, base, rootlesscontainers.Xattr, val)
	}
	if err != nil {
		n.add("owner %d:%d not recorded: %v", h.Uid, h.Gid, err)
	}
	return nil
}

// setXattrAt sets an xattr on parent/base through an O_PATH descriptor, so
// that no path is resolved again (and fifos are not opened).
func setXattrAt(parent int, base, name string, val []byte) error {
	fd, err := unix.Openat(parent, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Setxattr(fmt.Sprintf("/proc/self/fd/%d", fd), name, val, 0)
}

// setXattrs sets the PAX SCHILY.xattr records; those the process may not
// set (security.capability without privilege, trusted.*) are skipped with
// a warning rather than failing the image, as umoci and podman do not.
func setXattrs(fd int, h *tar.Header, n *notes) {
	for k, v := range h.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || name == rootlesscontainers.Xattr {
			continue
		}
		if err := unix.Fsetxattr(fd, name, []byte(v), 0); err != nil {
			n.add("xattr %s skipped: %v", name, err)
		}
	}
}

func setTimes(parent int, base string, h *tar.Header) error {
	ts := times(h)
	return unix.UtimesNanoAt(parent, base, ts[:], unix.AT_SYMLINK_NOFOLLOW)
}

// setTimesFd sets the times of the file open as fd: utimensat(fd, NULL),
// which x/sys/unix does not wrap (its Futimes resolves a /proc path).
func setTimesFd(fd int, h *tar.Header) error {
	ts := times(h)
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// times are an entry's atime and mtime; without an atime, the mtime.
func times(h *tar.Header) [2]unix.Timespec {
	ts := [2]unix.Timespec{unix.NsecToTimespec(h.AccessTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
	if h.AccessTime.IsZero() {
		ts[0] = ts[1]
	}
	return ts
}

// writable lets an unprivileged unpacker change directory fd (rel), which
// a lower layer may have made read-only (Fedora's /usr/bin is 0555): root
// ignores directory permissions, an unprivileged user must open them up
// and close them again at the end.
func (a *applier) writable(fd int, rel string) error {
	if !a.o.Rootless || fd == a.cache.fd && a.cache.writable {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&0o300 != 0o300 {
		mode := st.Mode & 0o7777
		if err := unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode|0o700); err != nil {
			return fmt.Errorf("open up read-only directory /%s: %w", rel, err)
		}
		a.opened = append(a.opened, dirMeta{rel: rel, h: &tar.Header{Mode: int64(mode)}})
	}
	if fd == a.cache.fd {
		// Only finishDirs makes a directory read-only again: until then
		// the cached one needs no second look.
		a.cache.writable, a.cache.gid = true, int(st.Gid)
	}
	return nil
}

// finishDirs applies directory modes, xattrs and times last, deepest
// first, so that making their children neither fails on a read-only
// directory nor moves their mtimes.
func (a *applier) finishDirs() error {
	done := map[string]bool{}
	defer a.closeOpened(done)
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		if done[d.rel] {
			continue // a later entry for the same directory wins
		}
		done[d.rel] = true
		dir, base := path.Split(d.rel)
		fd, err := a.openInRoot(d.rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			continue // replaced or removed later in the layer
		}
		var n notes
		setXattrs(fd, d.h, &n)
		a.warnAll(d.rel, n)
		err = unix.Fchmod(fd, uint32(d.h.Mode&0o7777))
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", d.rel, err)
		}
		pfd, err := a.openInRoot(strings.TrimSuffix(dir, "/"), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			continue
		}
		err = setTimes(pfd, base, d.h)
		unix.Close(pfd)
		if err != nil {
			return fmt.Errorf("%s: %w", d.rel, err)
		}
	}
	return nil
}
