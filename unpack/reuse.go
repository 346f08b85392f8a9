package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/imgtool/imgtool/internal/rootlesscontainers"
	"github.com/imgtool/imgtool/internal/xattr"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// A chain built beside a sibling (another chain over the same parent: the
// last build of an image whose top layer changed in a few files) takes
// the sibling's files that are the same, content and metadata, as hard
// links instead of writing them: creating files costs far more than
// linking them, and a rebuild after a one-file change would otherwise
// write the whole layer again. It is safe for the reason a clone is:
// Apply never writes into a file it did not make, so neither chain ever
// changes the inodes they share.
//
//	siblings/<parent hex, or "base">/<chain hex>   one empty file per chain built over that parent

// maxSiblingTries bounds the siblings looked at before giving up on one.
const maxSiblingTries = 4

func (t tree) siblingsDir(parent *Lease) string {
	name := "base"
	if parent != nil {
		name = parent.ChainID.Encoded()
	}
	return filepath.Join(t.dir, "siblings", name)
}

// sibling leases the most recently built chain over parent other than
// the one named skip (hex), or returns nil.
func (t tree) sibling(ctx context.Context, parent *Lease, skip string) *Lease {
	dir := t.siblingsDir(parent)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	type cand struct {
		name string
		at   int64
	}
	var cands []cand
	for _, e := range entries {
		if e.Name() == skip {
			continue
		}
		if fi, err := e.Info(); err == nil {
			cands = append(cands, cand{e.Name(), fi.ModTime().UnixNano()})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].at > cands[j].at })
	for i, c := range cands {
		if i == maxSiblingTries {
			break
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, c.name)
		if d.Validate() != nil {
			continue
		}
		if l, err := t.lease(ctx, d); err == nil && l != nil {
			return l
		}
	}
	return nil
}

// noteSibling records chain as built over parent (best effort: without
// the note, a later build only writes what it could have linked).
func (t tree) noteSibling(parent *Lease, chain digest.Digest) {
	dir := t.siblingsDir(parent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	p := filepath.Join(dir, chain.Encoded())
	if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		f.Close()
	}
}

// cleanSiblings removes the notes of chains no longer in the cache.
func (t tree) cleanSiblings() {
	root := filepath.Join(t.dir, "siblings")
	parents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, p := range parents {
		dir := filepath.Join(root, p.Name())
		kids, _ := os.ReadDir(dir)
		left := len(kids)
		for _, k := range kids {
			if _, err := os.Lstat(filepath.Join(t.dir, "chains", k.Name())); errors.Is(err, os.ErrNotExist) {
				if os.Remove(filepath.Join(dir, k.Name())) == nil {
					left--
				}
			}
		}
		_, err := os.Lstat(filepath.Join(t.dir, "chains", p.Name()))
		if left == 0 && (p.Name() == "base" || errors.Is(err, os.ErrNotExist)) {
			os.Remove(dir)
		}
	}
}

// reuse makes regular file entry h at parent/base a hard link to the file
// at the same path in the sibling tree when that file holds the same
// content with the metadata Apply would give h. It reports whether it
// did; when it did not, head yields the bytes of the entry it read (to be
// written before the rest of r), and closing it is the caller's.
func (a *applier) reuse(parent int, base, rel string, h *tar.Header, r io.Reader) (bool, io.Reader, func(), error) {
	fd, err := unix.Openat2(a.sibling, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return false, nil, func() {}, nil
	}
	f := os.NewFile(uintptr(fd), rel)
	if !a.sameMeta(f, h) {
		f.Close()
		return false, nil, func() {}, nil
	}
	// The contents, compared as the entry is read: on the first
	// difference, what was read is the sibling's up to there plus the
	// chunk in hand.
	buf, theirs := make([]byte, 64<<10), make([]byte, 64<<10)
	var off int64
	for off < h.Size {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), h.Size-off)])
		if err != nil {
			f.Close()
			return false, nil, func() {}, fmt.Errorf("tar entry ends after %d of its %d bytes: %w", off+int64(n), h.Size, err)
		}
		if m, _ := f.ReadAt(theirs[:n], off); m != n || !bytes.Equal(buf[:n], theirs[:n]) {
			head := io.MultiReader(io.NewSectionReader(f, 0, off), bytes.NewReader(buf[:n]))
			return false, head, func() { f.Close() }, nil
		}
		off += int64(n)
	}
	if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), parent, base, unix.AT_SYMLINK_FOLLOW); err != nil {
		// Not linkable (another filesystem, protected_hardlinks): the
		// content read is the sibling's, which is the entry's.
		return false, io.NewSectionReader(f, 0, h.Size), func() { f.Close() }, nil
	}
	f.Close()
	a.rep.Bytes += h.Size
	return true, nil, func() {}, nil
}

// sameMeta reports whether f is a regular file with the size, mode,
// owner, mtime and xattrs that Apply gives h.
func (a *applier) sameMeta(f *os.File, h *tar.Header) bool {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != h.Size || int64(st.Mode&0o7777) != h.Mode&0o7777 ||
		st.Mtim != unix.NsecToTimespec(h.ModTime.UnixNano()) {
		return false
	}
	names, err := xattr.ListFd(int(f.Fd()))
	if err != nil {
		return false
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if a.o.Rootless {
		uid, gid = 0, 0 // the caller's files are root's; others are recorded
	}
	var want []string
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && name != rootlesscontainers.Xattr {
			want = append(want, name+"="+v)
		}
	}
	var have []string
	for _, n := range names {
		v, err := fgetxattr(int(f.Fd()), n)
		if err != nil {
			return false
		}
		if n == rootlesscontainers.Xattr {
			res, err := rootlesscontainers.Decode(v)
			if err != nil {
				return false
			}
			uid, gid = int(res.UID), int(res.GID)
			continue
		}
		have = append(have, n+"="+string(v))
	}
	slices.Sort(want)
	slices.Sort(have)
	return uid == h.Uid && gid == h.Gid && slices.Equal(want, have)
}

func fgetxattr(fd int, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Fgetxattr(fd, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
