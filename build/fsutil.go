package build

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/imgtool/imgtool/internal/rootlesscontainers"
	"golang.org/x/sys/unix"
)

// tree is a root filesystem the build writes into (a stage's rootfs) or
// reads from (the context, another stage). Every path given to it is a
// path inside the tree, resolved as if the tree were "/": "..", absolute
// symlinks and symlinks that climb out all stay inside (openat2
// RESOLVE_IN_ROOT), so a hostile context or image cannot make the build
// touch the host.
type tree struct {
	root string // absolute, symlinks resolved
}

func newTree(root string) (*tree, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, err
	}
	return &tree{root: real}, nil
}

// resolve returns the host path that p (a path inside the tree) names,
// following every symlink inside the tree, and fs.ErrNotExist if it does
// not exist.
func (t *tree) resolve(p string) (string, error) {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return t.root, nil
	}
	dirfd, err := unix.Open(t.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", t.root, err)
	}
	defer unix.Close(dirfd)
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(dirfd, rel, how)
	// The kernel answers EAGAIN when a rename anywhere on the system races
	// with resolving a ".." (a busy CI machine renames all the time); a
	// retry resolves again. Bounded, so a pathological machine gets an
	// error rather than a spin.
	for i := 0; i < 64 && errors.Is(err, unix.EAGAIN); i++ {
		fd, err = unix.Openat2(dirfd, rel, how)
	}
	if errors.Is(err, unix.ENOSYS) {
		return "", errors.New("the kernel lacks openat2 (Linux 5.6 or later is needed to build safely)")
	}
	if err != nil {
		return "", &fs.PathError{Op: "resolve", Path: "/" + rel, Err: err}
	}
	defer unix.Close(fd)
	host, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("resolve /%s: %w", rel, err)
	}
	if host != t.root && !strings.HasPrefix(host, t.root+"/") {
		return "", fmt.Errorf("resolve /%s: it resolves outside the root (%s)", rel, host)
	}
	return host, nil
}

// rel returns host's path relative to the tree's root, slash-separated,
// as a layer names it.
func (t *tree) rel(host string) string {
	return strings.TrimPrefix(strings.TrimPrefix(host, t.root), "/")
}

// owner is who the build makes files belong to.
type owner struct{ uid, gid int }

// fsWriter writes files into a stage's tree and remembers every path it
// wrote, so that a layer can be made of exactly those paths without
// walking the tree.
type fsWriter struct {
	t        *tree
	rootless bool // unprivileged: owners go in the rootlesscontainers xattr
	written  map[string]bool
	opened   map[string]uint32 // read-only directories opened up, and their modes
}

func newFSWriter(t *tree, rootless bool) *fsWriter {
	return &fsWriter{t: t, rootless: rootless, written: map[string]bool{}, opened: map[string]uint32{}}
}

// openUp makes directory dir writable by its owner for the time of a
// write: an unprivileged builder owns the tree but, unlike root, is held
// to its modes, and images have read-only directories (Fedora's
// /usr/lib is 0555). restoreModes puts the modes back.
func (w *fsWriter) openUp(dir string) error {
	if !w.rootless {
		return nil
	}
	if _, ok := w.opened[dir]; ok {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	if st.Mode&0o300 == 0o300 {
		return nil
	}
	if err := unix.Chmod(dir, st.Mode&0o7777|0o700); err != nil {
		return fmt.Errorf("open up read-only directory /%s: %w", w.t.rel(dir), err)
	}
	w.opened[dir] = st.Mode & 0o7777
	return nil
}

// restoreModes gives the directories openUp opened their modes back.
func (w *fsWriter) restoreModes() error {
	var first error
	for dir, mode := range w.opened {
		if err := unix.Chmod(dir, mode); err != nil && first == nil {
			first = fmt.Errorf("restore mode of /%s: %w", w.t.rel(dir), err)
		}
		delete(w.opened, dir)
	}
	return first
}

// maxSymlinks bounds the symlinks mkdirAll follows, as the kernel's
// ELOOP does.
const maxSymlinks = 40

// mkdirAll makes directory p (inside the tree) and what is missing above
// it, new directories with mode 0755 and owner o, and returns its host
// path. A dangling symlink on the way is followed inside the tree and
// its target made, as docker does; a non-directory in the way is an
// error.
func (w *fsWriter) mkdirAll(p string, o owner) (string, error) {
	return w.mkdirAllDepth(path.Clean("/"+p), o, 0)
}

func (w *fsWriter) mkdirAllDepth(p string, o owner, links int) (string, error) {
	if links > maxSymlinks {
		return "", fmt.Errorf("make directory %s: too many levels of symbolic links", p)
	}
	host, err := w.t.resolve(p)
	if err == nil {
		fi, err := os.Stat(host)
		if err != nil {
			return "", err
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("make directory %s: %s is not a directory", p, p)
		}
		return host, nil
	}
	if !errors.Is(err, fs.ErrNotExist) || p == "/" {
		return "", err
	}
	parent, err := w.mkdirAllDepth(path.Dir(p), o, links)
	if err != nil {
		return "", err
	}
	host = filepath.Join(parent, path.Base(p))
	if fi, err := os.Lstat(host); err == nil {
		if fi.Mode()&fs.ModeSymlink == 0 {
			return "", fmt.Errorf("make directory %s: it appeared meanwhile", p)
		}
		// Never mkdir through the link on the host: make its target by
		// its path inside the tree.
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join("/"+w.t.rel(parent), target)
		}
		if _, err := w.mkdirAllDepth(target, o, links+1); err != nil {
			return "", err
		}
		return w.mkdirAllDepth(p, o, links+1)
	}
	if err := w.openUp(parent); err != nil {
		return "", err
	}
	if err := os.Mkdir(host, 0o755); err != nil {
		return "", fmt.Errorf("make directory %s: %w", p, err)
	}
	if err := w.own(host, o, false); err != nil {
		return "", err
	}
	w.mark(host)
	return host, nil
}

// mark records host as part of the layer.
func (w *fsWriter) mark(host string) {
	if r := w.t.rel(host); r != "" {
		w.written[r] = true
	}
}

// prepare makes room for a new entry named base in directory dirHost:
// anything there goes, except a directory that a directory merges into.
// It reports whether a directory is already there.
func (w *fsWriter) prepare(dirHost, base string, isDir bool) (string, bool, error) {
	if err := w.openUp(dirHost); err != nil {
		return "", false, err
	}
	host := filepath.Join(dirHost, base)
	fi, err := os.Lstat(host)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return host, false, nil
	case err != nil:
		return "", false, err
	case fi.IsDir() && isDir:
		return host, true, nil
	}
	if err := os.RemoveAll(host); err != nil {
		return "", false, fmt.Errorf("replace /%s: %w", w.t.rel(host), err)
	}
	return host, false, nil
}

// own gives host to o: chown when privileged; unprivileged, the file is
// the caller's (which layers record as root's) and any other owner is
// recorded in the user.rootlesscontainers xattr, as umoci and the
// unpacker do.
func (w *fsWriter) own(host string, o owner, isLink bool) error {
	if !w.rootless {
		if err := os.Lchown(host, o.uid, o.gid); err != nil {
			return fmt.Errorf("chown /%s: %w", w.t.rel(host), err)
		}
		return nil
	}
	if isLink {
		return nil // user.* xattrs cannot be set on symlinks; they stay root's
	}
	if o.uid == 0 && o.gid == 0 {
		err := unix.Lremovexattr(host, rootlesscontainers.Xattr)
		if err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("record owner of /%s: %w", w.t.rel(host), err)
		}
		return nil
	}
	v := rootlesscontainers.Encode(rootlesscontainers.Resource{UID: uint32(o.uid), GID: uint32(o.gid)})
	if err := unix.Lsetxattr(host, rootlesscontainers.Xattr, v, 0); err != nil {
		return fmt.Errorf("record owner %d:%d of /%s: %w", o.uid, o.gid, w.t.rel(host), err)
	}
	return nil
}

// fileMeta is what a written entry keeps of its source.
type fileMeta struct {
	mode  fs.FileMode // permission and setuid/setgid/sticky bits
	mtime unix.Timespec
	owner owner
}

// writeFile writes r as regular file base in dirHost.
func (w *fsWriter) writeFile(dirHost, base string, r io.Reader, m fileMeta) error {
	host, _, err := w.prepare(dirHost, base, false)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(host, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create /%s: %w", w.t.rel(host), err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write /%s: %w", w.t.rel(host), err)
	}
	return w.finish(host, m, false)
}

// finish sets owner, mode (after the owner: chown clears setuid) and
// mtime, and records the path.
func (w *fsWriter) finish(host string, m fileMeta, isLink bool) error {
	if err := w.own(host, m.owner, isLink); err != nil {
		return err
	}
	if !isLink {
		if err := os.Chmod(host, m.mode); err != nil {
			return fmt.Errorf("chmod /%s: %w", w.t.rel(host), err)
		}
	}
	ts := []unix.Timespec{m.mtime, m.mtime}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, host, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of /%s: %w", w.t.rel(host), err)
	}
	w.mark(host)
	return nil
}

// symlink writes a symlink base → target in dirHost.
func (w *fsWriter) symlink(dirHost, base, target string, m fileMeta) error {
	host, _, err := w.prepare(dirHost, base, false)
	if err != nil {
		return err
	}
	if err := os.Symlink(target, host); err != nil {
		return fmt.Errorf("symlink /%s: %w", w.t.rel(host), err)
	}
	return w.finish(host, m, true)
}

// link makes base in dirHost a hard link to old, a file written before.
func (w *fsWriter) link(old, dirHost, base string) error {
	host, _, err := w.prepare(dirHost, base, false)
	if err != nil {
		return err
	}
	if err := os.Link(old, host); err != nil {
		return fmt.Errorf("link /%s: %w", w.t.rel(host), err)
	}
	w.mark(host)
	return nil
}

// modeOf converts a stat mode to os.FileMode bits chmod takes.
func modeOf(st *unix.Stat_t) fs.FileMode {
	m := fs.FileMode(st.Mode & 0o777)
	if st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// removeAll removes a build's temporary tree even where the build made
// directories unwritable to their owner (an image's 0555 /proc, a RUN's
// chmod), which os.RemoveAll alone cannot.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
