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
			kfd, kerr := unix.Openat2(rootFd, p, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
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
