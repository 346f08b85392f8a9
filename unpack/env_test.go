package unpack_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// env is a root to unpack into, inside a temp dir that also holds a
// canary outside the root:
//
//	top/canary           file, 0640, fixed mtime, xattr user.canary
//	top/canarydir/inner  file in a 0750 dir, fixed mtimes
//	top/x/root           the root
//
// so that "../../canary" from the root names the canary.
type env struct {
	top, root         string
	canary, canaryDir string
	before            map[string]fstate
}

// probe is a name that absolute and ".." entries use: it must land in the
// root, never at the host's "/".
const probe = "imgtool-unpack-escape-probe"

var canaryTime = time.Unix(1_234_567_890, 123_456_789)

func newEnv(t testing.TB) *env {
	t.Helper()
	top := t.TempDir()
	e := &env{
		top:       top,
		root:      filepath.Join(top, "x", "root"),
		canary:    filepath.Join(top, "canary"),
		canaryDir: filepath.Join(top, "canarydir"),
	}
	// Runs before TempDir's removal: a layer may leave unwritable dirs.
	t.Cleanup(func() { makeRemovable(e.root) })
	must(t, os.MkdirAll(e.root, 0o755))
	must(t, os.WriteFile(e.canary, []byte("CANARY: the host file\n"), 0o640))
	must(t, os.Mkdir(e.canaryDir, 0o750))
	inner := filepath.Join(e.canaryDir, "inner")
	must(t, os.WriteFile(inner, []byte("CANARY: inside the host dir\n"), 0o600))
	must(t, unix.Lsetxattr(e.canary, "user.canary", []byte("host"), 0))
	for _, p := range []string{inner, e.canary, e.canaryDir, top} {
		must(t, os.Chtimes(p, canaryTime, canaryTime))
	}
	e.before = snapshot(t, top, e.root)
	return e
}

// reset empties the root for another run and takes a new snapshot.
func (e *env) reset(t testing.TB) {
	t.Helper()
	makeRemovable(e.root)
	must(t, os.RemoveAll(e.root))
	must(t, os.Mkdir(e.root, 0o755))
	e.before = snapshot(t, e.top, e.root)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// in is the host path of name inside the root.
func (e *env) in(name string) string { return filepath.Join(e.root, name) }

// fstate is everything about a host path that a layer must not change.
type fstate struct {
	Mode, UID, GID     uint32
	Ino, Nlink         uint64
	Size               int64
	Mtime, Ctime       unix.Timespec
	Sum                [32]byte
	Link, Xattrs       string
	DirNames           string
	Rdev               uint64
	StatErr, ReadError string
}

// snapshot records every path under top but the root.
func snapshot(t testing.TB, top, root string) map[string]fstate {
	t.Helper()
	m := map[string]fstate{}
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if p == root {
			return filepath.SkipDir
		}
		var s fstate
		if err != nil {
			s.StatErr = err.Error()
			m[p] = s
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			s.StatErr = err.Error()
			m[p] = s
			return nil
		}
		s.Mode, s.UID, s.GID, s.Ino, s.Nlink = st.Mode, st.Uid, st.Gid, st.Ino, st.Nlink
		s.Size, s.Mtime, s.Ctime, s.Rdev = st.Size, st.Mtim, st.Ctim, st.Rdev
		s.Xattrs = xattrs(p)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				s.ReadError = err.Error()
			}
			s.Sum = sha256.Sum256(b)
		case unix.S_IFLNK:
			s.Link, _ = os.Readlink(p)
		case unix.S_IFDIR:
			ents, _ := os.ReadDir(p)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			s.DirNames = strings.Join(names, "/")
		}
		m[p] = s
		return nil
	})
	must(t, err)
	return m
}

func xattrs(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "listxattr: " + err.Error()
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	sort.Strings(names)
	var out []string
	for _, name := range names {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			out = append(out, name+"!"+err.Error())
			continue
		}
		out = append(out, name+"="+string(v[:vn]))
	}
	return strings.Join(out, ",")
}

// checkCanary fails t if anything outside the root changed, or if the
// probe name showed up at the host's root.
func (e *env) checkCanary(t testing.TB) {
	t.Helper()
	after := snapshot(t, e.top, e.root)
	for p, b := range e.before {
		a, ok := after[p]
		switch {
		case !ok:
			t.Errorf("HOST PATH WAS CHANGED! THIS IS A PATH ESCAPE! %s was removed", p)
		case a != b:
			t.Errorf("HOST PATH WAS CHANGED! THIS IS A PATH ESCAPE! %s:\n before %+v\n after  %+v", p, b, a)
		}
	}
	for p := range after {
		if _, ok := e.before[p]; !ok {
			t.Errorf("HOST PATH WAS CHANGED! THIS IS A PATH ESCAPE! %s was created outside the root", p)
		}
	}
	if _, err := os.Lstat("/" + probe); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("HOST PATH WAS CHANGED! THIS IS A PATH ESCAPE! /%s exists (%v)", probe, err)
		os.RemoveAll("/" + probe)
	}
}

// makeRemovable gives the caller write and search permission on every
// directory under root, so that an unprivileged test can remove it.
func makeRemovable(root string) {
	if os.Geteuid() == 0 {
		return
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
}

// lstat stats name inside the root without following a final symlink.
func (e *env) lstat(t testing.TB, name string) (unix.Stat_t, bool) {
	t.Helper()
	var st unix.Stat_t
	err := unix.Lstat(e.in(name), &st)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return st, false
	}
	must(t, err)
	return st, true
}

// wantFile checks that name is a regular file (not a symlink to one)
// holding body.
func (e *env) wantFile(t testing.TB, name, body string) {
	t.Helper()
	st, ok := e.lstat(t, name)
	if !ok || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("%s: want a regular file, got exists=%v mode=%o", name, ok, st.Mode)
		return
	}
	got, err := os.ReadFile(e.in(name))
	must(t, err)
	if !bytes.Equal(got, []byte(body)) {
		t.Errorf("%s holds %.60q, want %.60q", name, got, body)
	}
}

func (e *env) wantType(t testing.TB, name string, typ uint32) {
	t.Helper()
	st, ok := e.lstat(t, name)
	if !ok || st.Mode&unix.S_IFMT != typ {
		t.Errorf("%s: want type %o, got exists=%v mode=%o", name, typ, ok, st.Mode)
	}
}

func (e *env) wantDir(t testing.TB, name string) { t.Helper(); e.wantType(t, name, unix.S_IFDIR) }

func (e *env) wantLink(t testing.TB, name, target string) {
	t.Helper()
	e.wantType(t, name, unix.S_IFLNK)
	if got, err := os.Readlink(e.in(name)); err == nil && got != target {
		t.Errorf("%s -> %q, want -> %q", name, got, target)
	}
}

func (e *env) wantAbsent(t testing.TB, name string) {
	t.Helper()
	if st, ok := e.lstat(t, name); ok {
		t.Errorf("%s exists (mode %o), want it absent", name, st.Mode)
	}
}

func (e *env) wantSameFile(t testing.TB, a, b string) {
	t.Helper()
	sa, oka := e.lstat(t, a)
	sb, okb := e.lstat(t, b)
	if !oka || !okb || sa.Ino != sb.Ino || sa.Dev != sb.Dev {
		t.Errorf("%s and %s are not the same inode (exist %v %v, ino %d %d)", a, b, oka, okb, sa.Ino, sb.Ino)
	}
}

// usage is the apparent size and the allocated bytes of regular files
// under dir.
func usage(dir string) (apparent, allocated int64) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		var st unix.Stat_t
		if err == nil && d.Type().IsRegular() && unix.Lstat(p, &st) == nil {
			apparent += st.Size
			allocated += st.Blocks * 512
		}
		return nil
	})
	return apparent, allocated
}

// recTB records failures instead of failing.
type recTB struct {
	testing.TB
	msgs []string
}

func (r *recTB) Errorf(format string, args ...any) { r.msgs = append(r.msgs, format) }

// TestCanaryDetects checks the checker: each change outside the root
// must be reported.
func TestCanaryDetects(t *testing.T) {
	for name, change := range map[string]func(e *env) error{
		"write":    func(e *env) error { return os.WriteFile(e.canary, []byte("changed"), 0o640) },
		"chmod":    func(e *env) error { return os.Chmod(e.canaryDir, 0o755) },
		"touch":    func(e *env) error { return os.Chtimes(e.canary, time.Now(), canaryTime) },
		"hardlink": func(e *env) error { return os.Link(e.canary, e.in("h")) },
		"create":   func(e *env) error { return os.WriteFile(e.top+"/x/evil", nil, 0o644) },
		"remove":   func(e *env) error { return os.Remove(e.canaryDir + "/inner") },
		"xattr":    func(e *env) error { return unix.Lsetxattr(e.canary, "user.evil", []byte("1"), 0) },
	} {
		e := newEnv(t)
		must(t, change(e))
		rec := &recTB{TB: t}
		e.checkCanary(rec)
		if len(rec.msgs) == 0 {
			t.Errorf("%s outside the root went unnoticed", name)
		}
	}
}
