package xattr

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestList(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := List(p); err != nil || len(got) != 0 {
		t.Fatalf("a file without xattrs: %v %v", got, err)
	}
	// Long names make the list outgrow the first buffer.
	var want []string
	for i := range 20 {
		name := "user." + strings.Repeat(string(rune('a'+i)), 100)
		if err := unix.Setxattr(p, name, []byte("v"), 0); err != nil {
			t.Fatalf("set %s: %v (the tests need a file system with user xattrs)", name, err)
		}
		want = append(want, name)
	}
	got, err := List(p)
	slices.Sort(got)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("List: %v %v, want %v", got, err, want)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err = ListFd(int(f.Fd()))
	slices.Sort(got)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("ListFd: %v %v, want %v", got, err, want)
	}
	// A symlink's own names, not its target's.
	l := filepath.Join(dir, "l")
	if err := os.Symlink("f", l); err != nil {
		t.Fatal(err)
	}
	if got, err := List(l); err != nil || len(got) != 0 {
		t.Fatalf("a symlink to a file with xattrs: %v %v", got, err)
	}
}
