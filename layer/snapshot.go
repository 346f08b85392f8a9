package layer

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/imgtool/imgtool/internal/xattr"
	"golang.org/x/sys/unix"
)

// meta is what a snapshot keeps of a path: enough to tell, without reading
// contents, whether it changed.
type meta struct {
	mode       uint32
	uid, gid   uint32
	size       int64
	mtime      unix.Timespec
	ctime      unix.Timespec
	dev, ino   uint64
	rdev       uint64
	xattrsHash string
	// born is a directory's birth time where the file system keeps one
	// (zero elsewhere): `rm -r d && mkdir d` often gets d's freed inode
	// number back, and only the birth time then tells the new directory
	// from the old one. Without it the diff would whiteout the old
	// children one by one instead of making d opaque, as overlayfs does,
	// and the same RUN would give a different layer depending on inode
	// reuse.
	born unix.StatxTimestamp
}

func metaOf(st *unix.Stat_t, xattrs string, born unix.StatxTimestamp) meta {
	return meta{mode: st.Mode, uid: st.Uid, gid: st.Gid, size: st.Size, mtime: st.Mtim, ctime: st.Ctim,
		dev: uint64(st.Dev), ino: st.Ino, rdev: uint64(st.Rdev), xattrsHash: xattrs, born: born}
}

// birthTime is p's birth time for a directory, when the file system
// records one; zero otherwise.
func birthTime(p string, st *unix.Stat_t) unix.StatxTimestamp {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.StatxTimestamp{}
	}
	var sx unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC, unix.STATX_BTIME, &sx)
	if err != nil || sx.Mask&unix.STATX_BTIME == 0 {
		return unix.StatxTimestamp{}
	}
	return sx.Btime
}

// Snapshot records the metadata of every path of a tree, so that Diff can
// later say what changed in it (what a RUN step did) without keeping a
// copy of the tree.
type Snapshot struct {
	root    string
	entries map[string]meta
}

// Take records the state of the tree at root.
func Take(root string) (*Snapshot, error) {
	s := &Snapshot{root: filepath.Clean(root), entries: map[string]meta{}}
	err := walk(s.root, nil, func(rel string, m meta) error {
		s.entries[rel] = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", root, err)
	}
	return s, nil
}

// walk calls fn for every path under root in lexical order, with its
// metadata. Reading xattrs costs a system call or two per path; when known
// (rel, with its ctime) returns the digest already known, walk uses it.
// The subtrees of root are stat'ed concurrently, since on a large tree the
// time goes to system calls; fn is called in order, from this goroutine.
func walk(root string, known func(rel string, ctime unix.Timespec) (string, bool), fn func(rel string, m meta) error) error {
	top, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	results := make([][]pathMeta, len(top))
	errs := make([]error, len(top))
	sem := make(chan struct{}, walkers)
	var wg sync.WaitGroup
	for i, e := range top {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i], errs[i] = walkSubtree(root, filepath.Join(root, e.Name()), known)
		}()
	}
	wg.Wait()
	for i := range top {
		if errs[i] != nil {
			return errs[i]
		}
		for _, pm := range results[i] {
			if err := fn(pm.rel, pm.m); err != nil {
				return err
			}
		}
	}
	return nil
}

const walkers = 8

type pathMeta struct {
	rel string
	m   meta
}

func walkSubtree(root, sub string, known func(string, unix.Timespec) (string, bool)) ([]pathMeta, error) {
	var st unix.Stat_t
	if err := unix.Lstat(sub, &st); err != nil {
		return nil, err
	}
	rel := filepath.ToSlash(sub[len(root)+1:])
	var out []pathMeta
	add := func(p, rel string, st *unix.Stat_t) error {
		x, ok := "", false
		if known != nil {
			x, ok = known(rel, st.Ctim)
		}
		if !ok {
			var err error
			if x, err = xattrDigest(p); err != nil {
				return err
			}
		}
		out = append(out, pathMeta{rel, metaOf(st, x, birthTime(p, st))})
		return nil
	}
	if err := add(sub, rel, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return out, nil
	}
	err := walkDirAt(sub, rel, add)
	return out, err
}

// walkDirAt visits the entries of directory dir (rel from the root) in
// lexical order, depth first, stat'ing each relative to its directory's
// descriptor: one path component to resolve instead of the whole path.
func walkDirAt(dir, rel string, add func(p, rel string, st *unix.Stat_t) error) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(int(f.Fd()), n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if err := add(dir+"/"+n, rel+"/"+n, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := walkDirAt(dir+"/"+n, rel+"/"+n, add); err != nil {
				return err
			}
		}
	}
	return nil
}

// xattrDigest is the xattrs of p as one comparable string.
func xattrDigest(p string) (string, error) {
	names, err := xattr.List(p)
	if err != nil || len(names) == 0 {
		return "", err
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		v, err := getXattr(p, n)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s=%x;", n, v)
	}
	return b.String(), nil
}

// Diff returns what changed in the tree since snapshot before was taken:
// new and modified paths, deleted ones (whiteouts), and directories
// replaced wholesale (opaque whiteouts), in tar order. Metadata decides;
// file contents are read only when a regular file's metadata changed in
// nothing but its ctime, which a rewrite that restored the mtime also
// leaves, and then only if lower (a tree with the earlier contents, such
// as the unpacked lower layer; may be "") can be compared.
func Diff(before *Snapshot, lower string) (Changes, error) {
	var out []Change
	present := map[string]bool{}
	replaced := map[string]bool{} // dirs replaced, and non-dirs that replaced dirs
	// Setting an xattr moves the ctime: with the ctime unchanged, the
	// xattrs are as recorded and need not be read again.
	known := func(rel string, ctime unix.Timespec) (string, bool) {
		old, ok := before.entries[rel]
		return old.xattrsHash, ok && old.ctime == ctime
	}
	err := walk(before.root, known, func(rel string, now meta) error {
		present[rel] = true
		old, ok := before.entries[rel]
		switch {
		case !ok || underReplaced(rel, replaced):
			// Under a replaced directory everything must be written: the
			// opaque whiteout hides all the lower layer held there.
			out = append(out, Change{Path: rel, Kind: Add})
		case old.mode&unix.S_IFMT != now.mode&unix.S_IFMT:
			if old.mode&unix.S_IFMT == unix.S_IFDIR {
				replaced[rel] = true // the old dir's children go with it
			}
			out = append(out, Change{Path: rel, Kind: Add})
		case now.mode&unix.S_IFMT == unix.S_IFDIR && (old.ino != now.ino || old.dev != now.dev || old.born != now.born):
			replaced[rel] = true
			out = append(out, Change{Path: rel, Kind: Replace})
		case old != now && !sameContent(before.root, lower, rel, old, now):
			out = append(out, Change{Path: rel, Kind: Add})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("diff %s: %w", before.root, err)
	}
	for rel := range before.entries {
		if present[rel] || coveredByAncestor(rel, present, replaced) {
			continue
		}
		out = append(out, Change{Path: rel, Kind: Delete})
	}
	slices.SortFunc(out, func(a, b Change) int { return ComparePaths(a.Path, b.Path) })
	return List(out), nil
}

func underReplaced(rel string, replaced map[string]bool) bool {
	for dir := filepath.Dir(rel); dir != "."; dir = filepath.Dir(dir) {
		if replaced[dir] {
			return true
		}
	}
	return false
}

// coveredByAncestor reports whether a deleted path needs no whiteout of
// its own: an ancestor is gone too (its whiteout covers it) or was
// replaced (its opaque whiteout, or its change of type, does).
func coveredByAncestor(rel string, present, replaced map[string]bool) bool {
	for dir := filepath.Dir(rel); dir != "."; dir = filepath.Dir(dir) {
		if !present[dir] || replaced[dir] {
			return true
		}
	}
	return false
}

// sameContent decides the one case metadata cannot: a regular file whose
// size, mode, owner, times and inode are unchanged but whose ctime moved.
func sameContent(root, lower, rel string, old, now meta) bool {
	onlyCtime := old
	onlyCtime.ctime = now.ctime
	if onlyCtime != now || now.mode&unix.S_IFMT != unix.S_IFREG || lower == "" {
		return false
	}
	return filesEqual(filepath.Join(lower, rel), filepath.Join(root, rel))
}

func filesEqual(a, b string) bool {
	fa, err := os.Open(a)
	if err != nil {
		return false
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return ea == eb || (ea == io.ErrUnexpectedEOF && eb == io.ErrUnexpectedEOF) || (ea == io.EOF && eb == io.EOF)
		}
	}
}

// ComparePaths orders paths as a depth-first walk in lexical order does:
// by component, so "a/b" sorts before "a.b".
func ComparePaths(a, b string) int {
	for {
		ca, ra, moreA := strings.Cut(a, "/")
		cb, rb, moreB := strings.Cut(b, "/")
		if c := strings.Compare(ca, cb); c != 0 {
			return c
		}
		switch {
		case !moreA && !moreB:
			return 0
		case !moreA:
			return -1
		case !moreB:
			return 1
		}
		a, b = ra, rb
	}
}
