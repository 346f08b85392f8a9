package layer_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/layer"
	"golang.org/x/sys/unix"
)

func changesOf(t *testing.T, ch layer.Changes) string {
	t.Helper()
	var out []string
	for {
		c, err := ch.Next()
		if err == io.EOF {
			return strings.Join(out, " ")
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, [...]string{"+", "-", "R"}[c.Kind]+c.Path)
	}
}

func TestDiff(t *testing.T) {
	root := t.TempDir()
	mk := func(p, content string) {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(content), 0o644)
	}
	for _, p := range []string{"keep/a", "keep/b", "mod/file", "gone/x/y", "gone/z", "repl/old", "repl/kept", "f2d", "d2f/inner", "chmod", "link-target", "xattr"} {
		mk(p, "v1 "+p)
	}
	os.Symlink("link-target", filepath.Join(root, "link"))
	before, err := layer.Take(root)
	if err != nil {
		t.Fatal(err)
	}
	lower := t.TempDir() // the earlier contents, as the unpacked lower layer holds them
	os.CopyFS(lower, os.DirFS(root))

	os.WriteFile(filepath.Join(root, "mod", "file"), []byte("version two"), 0o644)
	os.RemoveAll(filepath.Join(root, "gone"))
	// Held open, the removed repl/ keeps its inode, so the new repl/
	// cannot reuse it: on a file system without birth times, a reused
	// inode number would hide the replacement (see
	// TestDiffRecreatedDirSameInode for where birth times tell).
	oldRepl, err := os.Open(filepath.Join(root, "repl"))
	if err != nil {
		t.Fatal(err)
	}
	defer oldRepl.Close()
	os.RemoveAll(filepath.Join(root, "repl"))
	mk("repl/kept", "v1 repl/kept") // same name, same content, but under a new directory
	mk("new/dir/file", "new")
	os.Remove(filepath.Join(root, "f2d"))
	mk("f2d/child", "c")
	os.RemoveAll(filepath.Join(root, "d2f"))
	mk("d2f", "now a file")
	os.Chmod(filepath.Join(root, "chmod"), 0o600)
	os.Remove(filepath.Join(root, "link"))
	os.Symlink("elsewhere", filepath.Join(root, "link"))
	unix.Lsetxattr(filepath.Join(root, "xattr"), "user.test", []byte("1"), 0)
	// Touched but unchanged: only its ctime moves, and the lower tree
	// shows the contents are the same.
	os.Chmod(filepath.Join(root, "keep", "b"), 0o600)
	os.Chmod(filepath.Join(root, "keep", "b"), 0o644)

	ch, err := layer.Diff(before, lower)
	if err != nil {
		t.Fatal(err)
	}
	// keep/ is untouched, keep/b only touched; gone/x/y needs no whiteout
	// of its own; repl/kept must be written again under the opaque repl/.
	want := "+chmod +d2f +f2d +f2d/child -gone +link +mod/file +new +new/dir +new/dir/file Rrepl +repl/kept +xattr"
	if got := changesOf(t, ch); got != want {
		t.Errorf("changes:\n got %s\nwant %s", got, want)
	}
}
