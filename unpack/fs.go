package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

func (a *applier) dropCache() {
	if a.cache.fd >= 0 {
		unix.Close(a.cache.fd)
	}
	a.cache.dir, a.cache.fd, a.cache.stale = "", -1, false
}

// invalidate marks the cached directory as possibly resolving elsewhere
// now; it is reopened by the next entry (the descriptor stays valid for
// the entry in progress).
func (a *applier) invalidate() { a.cache.stale = true }

// mkdirAll returns a descriptor of directory rel, creating what is missing
// with mode 0755 (as docker does for parents a layer does not list). The
// descriptor is cached until the tree changes shape.
func (a *applier) mkdirAll(rel string) (int, error) {
	if a.cache.fd >= 0 && a.cache.dir == rel && !a.cache.stale {
		return a.cache.fd, nil
	}
	fd, err := a.openInRoot(rel, unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) && rel != "" {
		pdir, base := path.Split(rel)
		pfd, err := a.mkdirAll(strings.TrimSuffix(pdir, "/"))
		if err != nil {
			return -1, err
		}
		if err := unix.Mkdirat(pfd, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("make directory /%s: %w", rel, err)
		}
		a.created[rel] = true // made for this layer's entries: opaque whiteouts spare it
		fd, err = a.openInRoot(rel, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return -1, fmt.Errorf("open directory /%s: %w", rel, err)
		}
	} else if err != nil {
		return -1, fmt.Errorf("open directory /%s: %w", rel, err)
	}
	a.dropCache()
	a.cache.dir, a.cache.fd = rel, fd
	return fd, nil
}

// clear makes room for a new entry: whatever is at parent/base goes,
// except a directory that a directory entry merges into.
func (a *applier) clear(parent int, base string, isDir bool) error {
	var st unix.Stat_t
	err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if isDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil
	}
	return a.removeAt(parent, base)
}

// removeAt removes parent/name and, for a directory, everything in it,
// never following a symlink.
func (a *applier) removeAt(parent int, name string) error {
	a.invalidate() // cached directories may be among what goes
	err := unix.Unlinkat(parent, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	// A directory the layer may have made read-only: let us empty it. Only
	// a directory: a file of the cache may be a hard link to a parent
	// chain's inode, which no layer may change.
	dfd, derr := unix.Openat(parent, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if derr != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", dfd), 0o700)
	unix.Close(dfd)
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	names, err := readDirNames(fd)
	if err == nil {
		for _, n := range names {
			if err = a.removeAt(fd, n); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

func readDirNames(fd int) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}

// whiteout applies ".wh.NAME" (delete NAME of the lower layers) or
// ".wh..wh..opq" (hide everything the lower layers had in dir).
func (a *applier) whiteout(dir, base string) error {
	if base == ".wh..wh..opq" {
		fd, err := a.openInRoot(dir, unix.O_RDONLY|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) {
			_, err = a.mkdirAll(dir)
			return err
		}
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := a.writable(fd, dir); err != nil {
			return err
		}
		return a.removeLower(fd, dir)
	}
	name := strings.TrimPrefix(base, ".wh.")
	if strings.HasPrefix(name, ".wh.") && len(name) > len(".wh.") {
		// aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs) that old docker
		// layers carry: not a deletion, and nothing to make.
		a.warn(path.Join(dir, base), "aufs metadata skipped")
		return nil
	}
	if name == "" || name == "." || name == ".." || name == ".wh." {
		return fmt.Errorf("%w: whiteout %q names no entry (it would reach the directory itself or above)", ErrUnsafe, base)
	}
	if a.created[path.Join(dir, name)] {
		return nil // whiteouts hide lower layers, not this one
	}
	fd, err := a.openInRoot(dir, unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil // nothing there to hide
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := a.writable(fd, dir); err != nil {
		return err
	}
	return a.removeAt(fd, name)
}

// removeLower removes from directory fd (rel dir) everything this layer
// did not make, descending into the directories it did make or merge into,
// since those may still hold lower layers' entries.
func (a *applier) removeLower(fd int, dir string) error {
	names, err := readDirNames(fd)
	if err != nil {
		return err
	}
	for _, n := range names {
		rel := path.Join(dir, n)
		if !a.created[rel] {
			if err := a.removeAt(fd, n); err != nil {
				return err
			}
			continue
		}
		sub, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue // a file or symlink of this layer
		}
		if err != nil {
			return err
		}
		err = a.removeLower(sub, rel)
		unix.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}

// create makes the entry at parent/base and applies its metadata.
func (a *applier) create(parent int, dir, base string, h *tar.Header, r io.Reader) error {
	rel := path.Join(dir, base)
	mode := uint32(h.Mode & 0o7777)
	switch h.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(parent, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		a.dirs = append(a.dirs, dirMeta{rel: rel, h: h})
		return a.owner(parent, base, rel, h)
	case tar.TypeReg:
		return a.regular(parent, base, rel, h, r)
	case tar.TypeSymlink:
		a.invalidate() // a new symlink may change how cached paths resolve
		if err := unix.Symlinkat(h.Linkname, parent, base); err != nil {
			return err
		}
	case tar.TypeLink:
		target := clean(h.Linkname)
		if target == "" || target == rel {
			return fmt.Errorf("%w: hard link to %q", ErrUnsafe, h.Linkname)
		}
		tdir, tbase := path.Split(target)
		tfd, err := a.openInRoot(strings.TrimSuffix(tdir, "/"), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("hard link to %s: %w", h.Linkname, err)
		}
		err = unix.Linkat(tfd, tbase, parent, base, 0)
		unix.Close(tfd)
		if err != nil {
			return fmt.Errorf("hard link to %s: %w", h.Linkname, err)
		}
		return nil // a link shares its target's metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		if err := unix.Mknodat(parent, base, kind|mode, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))); err != nil {
			return err
		}
		if err := a.owner(parent, base, rel, h); err != nil {
			return err
		}
		if err := unix.Fchmodat(parent, base, mode, 0); err != nil {
			return err
		}
	}
	if h.Typeflag == tar.TypeSymlink {
		if err := a.owner(parent, base, rel, h); err != nil {
			return err
		}
	}
	return setTimes(parent, base, h)
}

// regular writes a file's content, then owner, mode, xattrs and times, in
// that order: chown clears setuid bits, and writing moves the mtime.
func (a *applier) regular(parent int, base, rel string, h *tar.Header, r io.Reader) error {
	if a.rep.Bytes+h.Size > a.o.Limits.MaxBytes || h.Size < 0 {
		return fmt.Errorf("%w: files expand past %d bytes", ErrLimit, a.o.Limits.MaxBytes)
	}
	if a.sibling >= 0 {
		linked, head, done, err := a.reuse(parent, base, rel, h, r)
		defer done()
		if err != nil || linked {
			return err
		}
		if head != nil {
			r = io.MultiReader(head, r)
		}
	}
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(r, h.Size))
	a.rep.Bytes += n
	if err != nil {
		return err
	}
	if n != h.Size {
		return fmt.Errorf("tar entry ends after %d of its %d bytes", n, h.Size)
	}
	if err := a.owner(parent, base, rel, h); err != nil {
		return err
	}
	if err := f.Chmod(os.FileMode(h.Mode&0o777) | modeBits(h.Mode)); err != nil {
		return err
	}
	a.xattrs(int(f.Fd()), rel, h)
	return setTimes(parent, base, h)
}
