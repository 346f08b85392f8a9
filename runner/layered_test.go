package runner_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/imgtool/imgtool/runner"
	"golang.org/x/sys/unix"
)

// TestLayeredRootfs: a Layered rootfs stacks Lower over Dir, the command's
// changes land in Upper in overlayfs's form (a deletion as a 0/0
// character device, a replaced directory marked opaque), the lower
// layers stay as they were, and the mount points the init made are gone
// from Upper.
func TestLayeredRootfs(t *testing.T) {
	dir := newRootfs(t)
	must(t, os.MkdirAll(filepath.Join(dir, "old/sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "old/sub/f"), []byte("old"), 0o644))
	mid := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(mid, "data"), 0o755))
	must(t, os.WriteFile(filepath.Join(mid, "data/mid"), []byte("from the middle layer\n"), 0o644))
	upper, work := t.TempDir(), t.TempDir()
	// overlayfs leaves work/work with mode 0, which its owner must open
	// up to remove.
	t.Cleanup(func() { os.Chmod(filepath.Join(work, "work"), 0o700) })
	r := run(t, runner.Spec{
		Dir: dir, Rootfs: runner.Layered, Lower: []string{mid}, Upper: upper, Work: work,
		Args: sh("cat /data/mid /data/file && rm /data/file && rm -r /old && mkdir /old && echo new > /old/n && echo hi > /new"),
	})
	if r.err != nil || r.code != 0 {
		t.Fatalf("code %d, err %v, stderr %q", r.code, r.err, r.stderr)
	}
	if r.stdout != "from the middle layer\nfrom the image\n" {
		t.Errorf("stdout %q: the layers are not stacked", r.stdout)
	}
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(upper, "data/file"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("data/file in the upper layer: mode %o rdev %d, want a 0/0 character device", st.Mode, st.Rdev)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(upper, "old"), "user.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("old in the upper layer: opaque xattr %q, %v; want y", buf[:n], err)
	}
	if b, err := os.ReadFile(filepath.Join(upper, "new")); err != nil || string(b) != "hi\n" {
		t.Errorf("new in the upper layer: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "data/file")); err != nil || string(b) != "from the image\n" {
		t.Errorf("the lowest layer changed: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "old/sub/f")); err != nil {
		t.Errorf("the lowest layer changed: %v", err)
	}
	// The init's mount points (proc, dev, sys, the /etc files) are
	// removed again; what is left is the command's.
	var names []string
	entries, err := os.ReadDir(upper)
	must(t, err)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	for _, gone := range []string{"proc", "dev", "sys"} {
		if slices.Contains(names, gone) {
			t.Errorf("mount point %s left in the upper layer: %v", gone, names)
		}
	}
	if _, err := os.Lstat(filepath.Join(upper, "etc/hosts")); err == nil {
		t.Errorf("mount point etc/hosts left in the upper layer")
	}
}

// TestLayeredRootfsValidation: a Layered rootfs names existing
// directories.
func TestLayeredRootfsValidation(t *testing.T) {
	dir := newRootfs(t)
	upper := t.TempDir()
	for _, s := range []runner.Spec{
		{Dir: dir, Rootfs: runner.Layered, Upper: upper, Args: []string{"true"}},
		{Dir: dir, Rootfs: runner.Layered, Upper: upper, Work: filepath.Join(upper, "missing"), Args: []string{"true"}},
		{Dir: dir, Rootfs: runner.Layered, Upper: upper, Work: t.TempDir(), Lower: []string{"relative"}, Args: []string{"true"}},
	} {
		if r := run(t, s); r.err == nil {
			t.Errorf("%+v: accepted", s)
		}
	}
}
