package layer

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDiffRecreatedDirSameInode: `rm -r d && mkdir d` that got d's old
// inode number back is still a replaced directory (an opaque whiteout, as
// overlayfs makes it), told by its birth time. The reuse is simulated by
// giving the snapshot the new directory's inode number: the kernel reuses
// freed inodes often but not on demand.
func TestDiffRecreatedDirSameInode(t *testing.T) {
	root := t.TempDir()
	d := filepath.Join(root, "d")
	if err := os.MkdirAll(filepath.Join(d, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	before, err := Take(root)
	if err != nil {
		t.Fatal(err)
	}
	if before.entries["d"].born == (unix.StatxTimestamp{}) {
		t.Fatalf("%s records no birth times (statx STATX_BTIME): run the tests on ext4, XFS, btrfs or tmpfs, as CI does", root)
	}
	if err := os.RemoveAll(d); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(d, "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(d, &st); err != nil {
		t.Fatal(err)
	}
	m := before.entries["d"]
	m.ino, m.dev = st.Ino, uint64(st.Dev)
	before.entries["d"] = m

	ch, err := Diff(before, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		c, err := ch.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, [...]string{"+", "-", "R"}[c.Kind]+c.Path)
	}
	if want := "Rd +d/new"; strings.Join(got, " ") != want {
		t.Errorf("changes %q, want %q", strings.Join(got, " "), want)
	}
}
