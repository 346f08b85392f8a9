package unpack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/imgtool/imgtool/internal/xattr"
	"golang.org/x/sys/unix"
)

// Clone copies the tree at src into dst, which must not exist: directories,
// symlinks, fifos and device nodes with their owners, modes, xattrs and
// times. With hardlink, regular files are hard-linked to src's (cheap, and
// safe only because nothing ever writes into a file of the cache in place:
// Apply replaces a file by unlinking it). Without, their data is copied,
// reflinked (FICLONE) where the filesystem can, with copy_file_range
// otherwise, and files hard-linked to each other in src stay so in dst.
//
// Owners are copied only by a privileged process; an unprivileged one owns
// everything it makes, and the image's owners travel in the
// user.rootlesscontainers xattr like any other. Symlinks are never
// followed. On error, dst may hold part of the tree.
//
// Written by hand: the copiers of the field (containerd's continuity/fs,
// otiai10/copy) either follow symlinks or drop xattrs and hard links.
func Clone(ctx context.Context, src, dst string, hardlink bool) error {
	sfd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("clone %s: %w", src, err)
	}
	defer unix.Close(sfd)
	if err := unix.Mkdir(dst, 0o700); err != nil {
		return fmt.Errorf("clone %s to %s: %w", src, dst, err)
	}
	dfd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("clone %s to %s: %w", src, dst, err)
	}
	defer unix.Close(dfd)
	c := &cloner{ctx: ctx, hardlink: hardlink, root: dfd, links: map[fileID]string{}, privileged: os.Geteuid() == 0}
	if err := c.dir(sfd, dfd, ""); err != nil {
		return fmt.Errorf("clone %s to %s: %w", src, dst, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return fmt.Errorf("clone %s: %w", src, err)
	}
	if err := c.meta(sfd, ".", dfd, ".", &st); err != nil {
		return fmt.Errorf("clone %s to %s: %w", src, dst, err)
	}
	return nil
}

type fileID struct{ dev, ino uint64 }

type cloner struct {
	ctx        context.Context
	hardlink   bool
	privileged bool
	root       int               // dst's descriptor, for links made by path
	links      map[fileID]string // copied files with several links, by dst path
}

// dir clones the entries of directory sfd into dfd (rel, relative to dst).
func (c *cloner) dir(sfd, dfd int, rel string) error {
	names, err := readDirNames(sfd)
	if err != nil {
		return fmt.Errorf("read /%s: %w", rel, err)
	}
	for _, name := range names {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if err := c.entry(sfd, dfd, name, path.Join(rel, name)); err != nil {
			return fmt.Errorf("/%s: %w", path.Join(rel, name), err)
		}
	}
	return nil
}

func (c *cloner) entry(sfd, dfd int, name, rel string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return c.subdir(sfd, dfd, name, rel, &st)
	case unix.S_IFREG:
		if c.hardlink {
			// Copied instead across filesystems, and past the
			// filesystem's link count limit (65,000 on ext4), which a
			// base shared by very many chains reaches.
			err := unix.Linkat(sfd, name, dfd, name, 0)
			if !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EMLINK) {
				return err // a link shares the inode, metadata and all
			}
		}
		return c.file(sfd, dfd, name, rel, &st)
	case unix.S_IFLNK:
		target, err := readlinkAt(sfd, name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, dfd, name); err != nil {
			return err
		}
	default: // fifos, sockets, device nodes
		if err := unix.Mknodat(dfd, name, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
	}
	return c.meta(sfd, name, dfd, name, &st)
}

func (c *cloner) subdir(sfd, dfd int, name, rel string, st *unix.Stat_t) error {
	// Made 0700 and given its mode once filled: a read-only directory
	// (0555 /usr/bin) would stop an unprivileged cloner filling it.
	if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
		return err
	}
	s, err := unix.Openat(sfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	d, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(d)
	if err := c.dir(s, d, rel); err != nil {
		return err
	}
	return c.meta(sfd, name, dfd, name, st) // times last: filling moved them
}

// file copies a regular file's data, or links it to the copy already made
// of another of its links.
func (c *cloner) file(sfd, dfd int, name, rel string, st *unix.Stat_t) error {
	id := fileID{uint64(st.Dev), st.Ino}
	if st.Nlink > 1 {
		if first, ok := c.links[id]; ok {
			return unix.Linkat(c.root, first, dfd, name, 0)
		}
		c.links[id] = rel
	}
	in, err := unix.Openat(sfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	src := os.NewFile(uintptr(in), name)
	defer src.Close()
	out, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	dst := os.NewFile(uintptr(out), name)
	defer dst.Close()
	if err := copyData(dst, src, st.Size); err != nil {
		return err
	}
	return c.meta(sfd, name, dfd, name, st)
}

// copyData reflinks src into dst where the filesystem shares extents
// (btrfs, xfs), and has the kernel copy otherwise.
func copyData(dst, src *os.File, size int64) error {
	if unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil {
		return nil
	}
	var done int64
	for done < size {
		n, err := unix.CopyFileRange(int(src.Fd()), nil, int(dst.Fd()), nil, int(min(size-done, 1<<30)), 0)
		if err != nil && done == 0 && (errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)) {
			_, err = io.Copy(dst, src) // an old kernel, or a filesystem pair it cannot copy between
			return err
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("file shrank to %d of its %d bytes while being copied", done, size)
		}
		done += int64(n)
	}
	return nil
}

// meta gives dfd/dname the owner, mode, xattrs and times of sfd/sname
// (st), in that order: chown clears setuid bits and xattrs move ctime only.
func (c *cloner) meta(sfd int, sname string, dfd int, dname string, st *unix.Stat_t) error {
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if c.privileged {
		if err := unix.Fchownat(dfd, dname, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	if !isLink {
		if err := unix.Fchmodat(dfd, dname, st.Mode&0o7777, 0); err != nil {
			return err
		}
	}
	if err := copyXattrs(procPath(sfd, sname), procPath(dfd, dname)); err != nil {
		return err
	}
	return unix.UtimesNanoAt(dfd, dname, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// procPath names dir/name through the descriptor, so that no path outside
// the tree is resolved again; the L*xattr calls do not follow name.
func procPath(dir int, name string) string {
	return fmt.Sprintf("/proc/self/fd/%d/%s", dir, name)
}

func copyXattrs(src, dst string) error {
	names, err := xattr.List(src)
	if err != nil {
		return err
	}
	val := make([]byte, 4096)
	for _, name := range names {
		if name == "security.selinux" {
			continue // the policy labels what is made, as cp does without --preserve=context
		}
		n, err := unix.Lgetxattr(src, name, val)
		if errors.Is(err, unix.ERANGE) {
			if n, err = unix.Lgetxattr(src, name, nil); err == nil {
				val = make([]byte, n)
				n, err = unix.Lgetxattr(src, name, val)
			}
		}
		if err != nil {
			return fmt.Errorf("read xattr %s: %w", name, err)
		}
		if err := unix.Lsetxattr(dst, name, val[:n], 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

func readlinkAt(dir int, name string) (string, error) {
	for size := 256; size <= 1<<16; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dir, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
	return "", fmt.Errorf("read link %s: %w", name, unix.ENAMETOOLONG)
}
