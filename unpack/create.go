package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Making entries. Each is made with an *at call relative to its parent's
// descriptor, O_EXCL / O_NOFOLLOW where the call has them, so nothing is
// ever written through a name that resolves elsewhere.

// copyBuf sizes the buffer file content is gathered in before a write: a
// typical rootfs file then takes one write system call.
const copyBuf = 1 << 20

// create makes the entry at parent/base and applies its metadata.
func (a *applier) create(parent int, dir, base string, h *tar.Header, r io.Reader) error {
	rel := path.Join(dir, base)
	switch h.Typeflag {
	case tar.TypeDir:
		return a.directory(parent, base, rel, h)
	case tar.TypeReg:
		return a.regular(parent, base, rel, h, r)
	case tar.TypeSymlink:
		a.invalidate() // a new symlink may change how cached paths resolve
		err := a.place(parent, base, false, func() error { return unix.Symlinkat(h.Linkname, parent, base) })
		if err != nil {
			return err
		}
		if err := a.owner(parent, base, rel, h); err != nil {
			return err
		}
		return setTimes(parent, base, h)
	case tar.TypeLink:
		return a.hardlink(parent, base, rel, h)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return a.node(parent, base, rel, h)
	}
	return nil
}

// place runs mk to make parent/base; if something is in the way, it is
// cleared and mk runs once more. Trying first saves a stat per entry: in a
// fresh tree nothing ever is in the way. For a directory that merges into
// one already there, the second mk's EEXIST is returned.
func (a *applier) place(parent int, base string, isDir bool, mk func() error) error {
	err := mk()
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	if err := a.clear(parent, base, isDir); err != nil {
		return err
	}
	return mk()
}

// directory makes a directory, or merges into the one already there; its
// mode, xattrs and times wait for finishDirs.
func (a *applier) directory(parent int, base, rel string, h *tar.Header) error {
	err := a.place(parent, base, true, func() error { return unix.Mkdirat(parent, base, 0o700) })
	merged := errors.Is(err, unix.EEXIST)
	if err != nil && !merged {
		return err
	}
	a.dirs = append(a.dirs, dirMeta{rel: rel, h: h})
	if merged {
		return a.chown(parent, base, rel, h)
	}
	return a.owner(parent, base, rel, h)
}

// regular makes a file and reads its content; a writer goroutine (or,
// for a large file, the applier right away) then writes it and sets the
// file's metadata through its descriptor (see writer.go).
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
	var fd int
	err := a.place(parent, base, false, func() (err error) {
		fd, err = unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	j := fileJob{fd: fd, seq: a.rep.Entries, rel: rel, h: h, owner: a.ownerNeeded(h)}
	if h.Size > batchBytes {
		return a.writeNow(j, r)
	}
	if a.w == nil {
		a.w = newWriters(a.o.Rootless)
	}
	if !a.w.cur.room(h.Size) {
		a.w.flush()
	}
	// Queued before its content is read: should the tar end early, the
	// batch is dropped and fd closed by stopWriters.
	n, err := io.ReadFull(r, a.w.add(j))
	a.rep.Bytes += int64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("tar entry ends after %d of its %d bytes", n, h.Size)
	}
	return err
}

// writeNow writes a large file from the tar and finishes it, while the
// writers work on the batch before it.
func (a *applier) writeNow(j fileJob, r io.Reader) error {
	if a.w != nil {
		a.w.flush()
	}
	n, err := a.copyContent(j.fd, r, j.h.Size)
	a.rep.Bytes += n
	if err != nil {
		unix.Close(j.fd)
		return err
	}
	var notes notes
	err = finishFile(j, a.o.Rootless, &notes)
	a.warnAll(j.rel, notes)
	return err
}

// copyContent writes size bytes of r to fd, gathering up to copyBuf bytes
// before each write.
func (a *applier) copyContent(fd int, r io.Reader, size int64) (int64, error) {
	if a.buf == nil && size > 0 {
		a.buf = make([]byte, copyBuf)
	}
	var done int64
	for done < size {
		chunk := a.buf[:min(int64(len(a.buf)), size-done)]
		n, err := io.ReadFull(r, chunk)
		if werr := writeAll(fd, chunk[:n]); werr != nil {
			return done, werr
		}
		done += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return done, fmt.Errorf("tar entry ends after %d of its %d bytes", done, size)
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// hardlink links parent/base to an entry already inside the root; a link
// shares its target's metadata, so none is applied.
func (a *applier) hardlink(parent int, base, rel string, h *tar.Header) error {
	target := clean(h.Linkname)
	if target == "" || target == rel {
		return fmt.Errorf("%w: hard link to %q", ErrUnsafe, h.Linkname)
	}
	tdir, tbase := path.Split(target)
	tfd, err := a.openInRoot(strings.TrimSuffix(tdir, "/"), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("hard link to %s: %w", h.Linkname, err)
	}
	defer unix.Close(tfd)
	err = a.place(parent, base, false, func() error { return unix.Linkat(tfd, tbase, parent, base, 0) })
	if err != nil {
		return fmt.Errorf("hard link to %s: %w", h.Linkname, err)
	}
	return nil
}

// node makes a device node or a fifo.
func (a *applier) node(parent int, base, rel string, h *tar.Header) error {
	mode := uint32(h.Mode & 0o7777)
	kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
	dev := int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))
	if err := a.place(parent, base, false, func() error { return unix.Mknodat(parent, base, kind|mode, dev) }); err != nil {
		return err
	}
	if err := a.owner(parent, base, rel, h); err != nil {
		return err
	}
	if err := unix.Fchmodat(parent, base, mode, 0); err != nil {
		return err
	}
	return setTimes(parent, base, h)
}
