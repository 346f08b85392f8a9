package layer

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/imgtool/imgtool/internal/xattr"
	"golang.org/x/sys/unix"
)

// UpperChanges returns the changes an overlayfs upper directory holds
// over its lower layers (uppermost first), in tar order, for Write with
// upper as the root: what a process changed in a root filesystem mounted
// as an overlay, read from the upper directory alone instead of diffing
// the whole tree against a snapshot. Deletions (0/0 character devices,
// or empty files marked with an overlay.whiteout xattr) become
// whiteouts; a directory marked opaque that replaced a lower directory
// becomes a Replace (an opaque whiteout). Overlay keeps a whole copy of
// whatever it copies up, so an entry that is there only because a child
// changed, or that was opened for writing and not changed, is compared
// with the lower layers and left out when equal, as Diff leaves it out:
// the two give the same layer. Upper must come from an overlay mounted
// without redirect_dir or metacopy (userxattr turns both off).
func UpperChanges(upper string, lower []string) (Changes, error) {
	u := &upperWalk{}
	if err := u.dir(upper, "", lower, false); err != nil {
		return nil, fmt.Errorf("read the changes in %s: %w", upper, err)
	}
	return List(u.out), nil
}

type upperWalk struct {
	out []Change
}

// dir walks upper directory host (rel from the root), whose lower
// counterparts are lower (uppermost first; none for a directory that is
// new or opaque). fresh means everything below is new.
func (u *upperWalk) dir(host, rel string, lower []string, fresh bool) error {
	names, err := readNames(host)
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		p, r := host+"/"+name, joinRel(rel, name)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if isWhiteout(p, &st) {
			if !fresh {
				if _, ok := lowerStat(lower, name); ok {
					u.out = append(u.out, Change{Path: r, Kind: Delete})
				}
			}
			continue
		}
		var below *lowerEntry
		if !fresh {
			if le, ok := lowerStat(lower, name); ok {
				below = &le
			}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := u.subdir(p, r, &st, below); err != nil {
				return err
			}
			continue
		}
		if below == nil || !sameEntry(p, &st, below) {
			u.out = append(u.out, Change{Path: r, Kind: Add})
		}
	}
	return nil
}

// subdir handles directory p of the upper layer: new, replacing a lower
// one (opaque), or merged with it, in which case it is a change only if
// its own metadata changed.
func (u *upperWalk) subdir(p, rel string, st *unix.Stat_t, below *lowerEntry) error {
	switch {
	case below == nil || below.st.Mode&unix.S_IFMT != unix.S_IFDIR:
		// New, or in place of a lower non-directory: all of it is new,
		// and an opaque marker would hide nothing.
		u.out = append(u.out, Change{Path: rel, Kind: Add})
		return u.dir(p, rel, nil, true)
	case isOpaque(p):
		u.out = append(u.out, Change{Path: rel, Kind: Replace})
		return u.dir(p, rel, nil, true)
	}
	if !sameEntry(p, st, below) {
		u.out = append(u.out, Change{Path: rel, Kind: Add})
	}
	return u.dir(p, rel, below.dirs, false)
}

// lowerEntry is a name as the lower layers show it: the uppermost layer
// that has it decides, and for a directory the layers it merges with
// below (down to an opaque one) are where its children are looked up.
type lowerEntry struct {
	host string
	st   unix.Stat_t
	dirs []string
}

// lowerStat looks name up in lower, directories uppermost first, as
// overlayfs does: a whiteout hides it, a non-directory ends the search,
// and a directory merges with those below it until an opaque one.
func lowerStat(lower []string, name string) (lowerEntry, bool) {
	var e lowerEntry
	found := false
	for _, d := range lower {
		p := d + "/" + name
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			continue
		}
		if isWhiteout(p, &st) {
			break
		}
		if !found {
			e, found = lowerEntry{host: p, st: st}, true
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || e.st.Mode&unix.S_IFMT != unix.S_IFDIR {
			break
		}
		e.dirs = append(e.dirs, p)
		if isOpaque(p) {
			break
		}
	}
	return e, found
}

// sameEntry reports whether upper entry p (lstat st) is what the lower
// layers hold: same type, mode, owner, mtime, size, device, link target
// and xattrs (overlayfs's own aside), and for a regular file the same
// content. The ctime is not compared: a copy-up always moves it.
func sameEntry(p string, st *unix.Stat_t, below *lowerEntry) bool {
	b := &below.st
	if st.Mode != b.Mode || st.Uid != b.Uid || st.Gid != b.Gid || st.Mtim != b.Mtim || st.Rdev != b.Rdev {
		return false
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if st.Size != b.Size {
			return false
		}
	case unix.S_IFLNK:
		t1, err1 := os.Readlink(p)
		t2, err2 := os.Readlink(below.host)
		if err1 != nil || err2 != nil || t1 != t2 {
			return false
		}
	}
	x1, err1 := imageXattrs(p)
	x2, err2 := imageXattrs(below.host)
	if err1 != nil || err2 != nil || x1 != x2 {
		return false
	}
	return st.Mode&unix.S_IFMT != unix.S_IFREG || filesEqual(p, below.host)
}

// imageXattrs is p's xattrs as one comparable string, without those
// overlayfs keeps for itself.
func imageXattrs(p string) (string, error) {
	names, err := xattr.List(p)
	if err != nil {
		return "", err
	}
	names = slices.DeleteFunc(names, isOverlayXattr)
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		v, err := getXattr(p, n)
		if errors.Is(err, unix.ENODATA) {
			continue
		} else if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s=%x;", n, v)
	}
	return b.String(), nil
}

// isOverlayXattr reports whether xattr name is overlayfs's bookkeeping
// (opaque and whiteout markers, origins, redirects), never the image's.
func isOverlayXattr(name string) bool {
	return strings.HasPrefix(name, "user.overlay.") || strings.HasPrefix(name, "trusted.overlay.")
}

// isWhiteout reports whether p is an overlayfs whiteout: a 0/0 character
// device, or an empty regular file marked with an overlay.whiteout xattr
// (what overlayfs takes from lower layers since Linux 6.7).
func isWhiteout(p string, st *unix.Stat_t) bool {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return st.Rdev == 0
	case unix.S_IFREG:
		return st.Size == 0 && (hasXattr(p, "user.overlay.whiteout") || hasXattr(p, "trusted.overlay.whiteout"))
	}
	return false
}

// isOpaque reports whether directory p is marked opaque: nothing of the
// lower layers' directory shows through it.
func isOpaque(p string) bool {
	for _, name := range []string{"user.overlay.opaque", "trusted.overlay.opaque"} {
		v, err := getXattr(p, name)
		if err == nil && string(v) == "y" {
			return true
		}
	}
	return false
}

func hasXattr(p, name string) bool {
	_, err := unix.Lgetxattr(p, name, nil)
	return err == nil
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

func joinRel(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

// StackLookup looks rel (slash-separated, relative) up in a stack of
// overlayfs layers (uppermost first) as the mounted overlay shows it,
// following no symlink: it returns the uppermost layer's entry (its host
// path and lstat), or false when rel is not there (deleted, hidden by an
// opaque directory, or below something that is not a directory).
func StackLookup(lower []string, rel string) (string, unix.Stat_t, bool) {
	dirs := lower
	var e lowerEntry
	for rest := rel; ; {
		name, more, found := strings.Cut(rest, "/")
		var ok bool
		if e, ok = lowerStat(dirs, name); !ok {
			return "", unix.Stat_t{}, false
		}
		if !found {
			return e.host, e.st, true
		}
		if e.st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return "", unix.Stat_t{}, false
		}
		dirs, rest = e.dirs, more
	}
}
