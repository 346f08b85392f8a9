package unpack_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgtool/imgtool/unpack"
	"golang.org/x/sys/unix"
)

// TestWalkMatchesOpenat2: the fallback for kernels without openat2
// resolves every path, hostile symlinks included, to the same file (or the
// same error) as openat2(RESOLVE_IN_ROOT).
func TestWalkMatchesOpenat2(t *testing.T) {
	top := t.TempDir()
	root := filepath.Join(top, "a", "root")
	must(t, os.MkdirAll(filepath.Join(root, "d", "sub"), 0o755))
	must(t, os.MkdirAll(filepath.Join(top, "d"), 0o755)) // what escapes would find
	for _, f := range []string{"d/f", "file", "../../d/outside"} {
		must(t, os.WriteFile(filepath.Join(root, f), []byte(f), 0o644))
	}
	for link, target := range map[string]string{
		"abs": "/d", "rel": "../../d", "loop": "loop", "dotdot": "..", "f": "d/f", "chain": "abs/f",
		"dangling": "/missing", "d/up": "../../..", "d/sub/back": "../../d/./sub/", "host": top, "proc": "/proc/self/root",
	} {
		must(t, os.Symlink(target, filepath.Join(root, link)))
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(rootFd)
	paths := []string{"d", "d/f", "abs", "abs/f", "rel/f", "rel/outside", "../../d/f", "dotdot/dotdot/d", "loop", "loop/x",
		"f", "chain", "dangling", "dangling/x", "file/x", ".", "..", "d/..", "abs/../d/f", "d/up/d/f", "d/sub/back/back",
		"host", "host/d", "proc", "proc/d", "d/sub/../../file", "missing/x"}
	flagSets := map[string]int{
		"O_PATH": unix.O_PATH, "O_PATH|O_NOFOLLOW": unix.O_PATH | unix.O_NOFOLLOW, "O_PATH|O_DIRECTORY": unix.O_PATH | unix.O_DIRECTORY,
		"O_RDONLY|O_DIRECTORY|O_NOFOLLOW": unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW, "O_RDONLY": unix.O_RDONLY,
	}
	for _, p := range paths {
		for fname, flags := range flagSets {
			kfd, kerr := unpack.Openat2InRoot(rootFd, p, flags)
			if errors.Is(kerr, unix.ENOSYS) {
				t.Fatal("the kernel has no openat2 (Linux 5.6 or later) to compare the walk with; TestHostileWalk still covers the walk alone")
			}
			wfd, werr := unpack.WalkInRoot(rootFd, p, flags)
			if got, want := describe(wfd, werr), describe(kfd, kerr); got != want {
				t.Errorf("%s %s: walk gives %s, openat2 %s", p, fname, got, want)
			}
		}
	}
}

// describe is the file fd names, or the error; it closes fd.
func describe(fd int, err error) string {
	if err != nil {
		return "error " + err.Error()
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "fstat " + err.Error()
	}
	return fmt.Sprintf("inode %d:%d mode %o", st.Dev, st.Ino, st.Mode&unix.S_IFMT)
}

// TestResolveUnderRenames: openat2 fails with EAGAIN when a rename
// anywhere on the system races with resolving "..", about one call in a
// hundred here while another goroutine moves a file between two
// directories. Apply must not fail for it: a layer whose every file lies
// behind a ".." symlink (each followed by a symlink entry, so that its
// parent is resolved afresh) applies whole while renames run.
func TestResolveUnderRenames(t *testing.T) {
	e := newEnv(t)
	defer e.checkCanary(t)
	const files = 2000
	b := newTar(t).dir("d/").dir("d/sub/").symlink("d/sub/up", "../..")
	for i := range files {
		b.file(fmt.Sprintf("d/sub/up/f%d", i), "x").symlink(fmt.Sprintf("s%d", i), "d")
	}
	l := mkLayer(t, "none", b.bytes())
	moves := t.TempDir()
	must(t, os.Mkdir(filepath.Join(moves, "a"), 0o755))
	must(t, os.Mkdir(filepath.Join(moves, "b"), 0o755))
	must(t, os.WriteFile(filepath.Join(moves, "a", "x"), nil, 0o644))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			os.Rename(filepath.Join(moves, "a", "x"), filepath.Join(moves, "b", "x"))
			os.Rename(filepath.Join(moves, "b", "x"), filepath.Join(moves, "a", "x"))
		}
	}()
	r, err := apply(e.root, l, unpack.Options{})
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("Apply with renames running: %v", err)
	}
	if want := 3 + 2*files; r.Entries != want {
		t.Errorf("%d entries applied, want %d", r.Entries, want)
	}
	e.wantFile(t, fmt.Sprintf("f%d", files-1), "x")
}
