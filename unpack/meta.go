package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

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

// modeBits turns Unix setuid, setgid and sticky bits into os.FileMode's.
func modeBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// owner chowns when the process may, and otherwise records the owner in
// the user.rootlesscontainers xattr, which the layer writer reads back.
func (a *applier) owner(parent int, base, rel string, h *tar.Header) error {
	if !a.o.Rootless {
		err := unix.Fchownat(parent, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW)
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
		a.warn(rel, "owner %d:%d not recorded: symlinks cannot hold user xattrs", h.Uid, h.Gid)
		return nil
	}
	val := rootlesscontainers.Encode(rootlesscontainers.Resource{UID: uint32(h.Uid), GID: uint32(h.Gid)})
	if err := setXattrAt(parent, base, rootlesscontainers.Xattr, val); err != nil {
		a.warn(rel, "owner %d:%d not recorded: %v", h.Uid, h.Gid, err)
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

// xattrs sets the PAX SCHILY.xattr records; those the process may not set
// (security.capability without privilege, trusted.*) are skipped with a
// warning rather than failing the image, as umoci and podman do not.
func (a *applier) xattrs(fd int, rel string, h *tar.Header) {
	for k, v := range h.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || name == rootlesscontainers.Xattr {
			continue
		}
		if err := unix.Fsetxattr(fd, name, []byte(v), 0); err != nil {
			a.warn(rel, "xattr %s skipped: %v", name, err)
		}
	}
}

func setTimes(parent int, base string, h *tar.Header) error {
	ts := []unix.Timespec{unix.NsecToTimespec(h.AccessTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
	if h.AccessTime.IsZero() {
		ts[0] = ts[1]
	}
	return unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// writable lets an unprivileged unpacker change directory fd (rel), which
// a lower layer may have made read-only (Fedora's /usr/bin is 0555): root
// ignores directory permissions, an unprivileged user must open them up
// and close them again at the end.
func (a *applier) writable(fd int, rel string) error {
	if !a.o.Rootless {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&0o300 == 0o300 {
		return nil
	}
	mode := st.Mode & 0o7777
	if err := unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode|0o700); err != nil {
		return fmt.Errorf("open up read-only directory /%s: %w", rel, err)
	}
	a.opened = append(a.opened, dirMeta{rel: rel, h: &tar.Header{Mode: int64(mode)}})
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
		a.xattrs(fd, d.rel, d.h)
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
