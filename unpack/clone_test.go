package unpack_test

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgtool/imgtool/unpack"
	"golang.org/x/sys/unix"
)

var laterTime = time.Unix(1_700_000_000, 444_000_000)

// richBase is a layer with every kind of entry and of metadata a child
// layer could be tempted to change in place.
func richBase(b *tarB) {
	xattr := map[string]string{"SCHILY.xattr.user.origin": "base"}
	b.add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: dirTime}, nil)
	b.add(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: fileTime}, []byte("root:x:0:0\n"))
	b.add(&tar.Header{Name: "etc/shadow", Typeflag: tar.TypeReg, Mode: 0o640, Gid: 42, ModTime: fileTime}, []byte("root:*\n"))
	b.add(&tar.Header{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o555, ModTime: dirTime}, nil)
	b.add(&tar.Header{Name: "usr/bin/tool", Typeflag: tar.TypeReg, Mode: 0o4755, ModTime: fileTime}, []byte("#!/bin/sh\n"))
	b.link("usr/bin/tool2", "usr/bin/tool")
	b.add(&tar.Header{Name: "data/f", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1000, Gid: 1000, ModTime: fileTime, PAXRecords: xattr}, []byte("data"))
	b.add(&tar.Header{Name: "data/owned", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 1000, Gid: 1000, ModTime: fileTime}, []byte("owned"))
	b.add(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "etc/passwd", ModTime: linkTime}, nil)
	b.add(&tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o600, ModTime: fileTime}, nil)
	b.add(&tar.Header{Name: "opq/", Typeflag: tar.TypeDir, Mode: 0o750, ModTime: dirTime}, nil)
	b.add(&tar.Header{Name: "opq/a", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: fileTime}, []byte("a"))
	if os.Geteuid() == 0 {
		b.dev("dev/null", tar.TypeChar, 1, 3)
	}
}

// richChild replaces, relinks, re-owns, re-modes and removes what
// richBase made.
func richChild(b *tarB) {
	later := map[string]string{"SCHILY.xattr.user.origin": "child"}
	b.add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1000, ModTime: laterTime, PAXRecords: later}, nil)
	b.add(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 7, ModTime: laterTime}, []byte("changed\n"))
	b.add(&tar.Header{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: laterTime}, nil)
	b.add(&tar.Header{Name: "usr/bin/tool", Typeflag: tar.TypeReg, Mode: 0o700, Uid: 1000, ModTime: laterTime}, []byte("new tool"))
	// A hard link to a lower file with metadata of its own, which must not
	// reach the shared inode.
	b.add(&tar.Header{Name: "usr/bin/tool3", Typeflag: tar.TypeLink, Linkname: "usr/bin/tool2", Mode: 0o777, Uid: 5, Gid: 5, ModTime: laterTime}, nil)
	b.add(&tar.Header{Name: "data/f", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: laterTime, PAXRecords: later}, []byte("new data"))
	b.whiteout("data", "owned")
	b.add(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "etc/shadow", ModTime: laterTime}, nil)
	b.add(&tar.Header{Name: "fifo", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: laterTime}, []byte("was a fifo"))
	b.opaque("opq").file("opq/b", "b")
}

// TestCacheParentUnchanged: building a child chain, whose files start as
// hard links to the parent's, leaves every entry of the parent as it was.
func TestCacheParentUnchanged(t *testing.T) {
	for _, rootless := range []bool{false, true} {
		t.Run(modeName(rootless), func(t *testing.T) {
			b := newBlobs()
			base, child := b.layer(t, richBase), b.layer(t, richChild)
			c := openCache(t, cacheDir(t), unpack.Options{Rootless: rootless})
			parent := rootfs(t, c, b, base)
			before := treeState(t, parent.Dir)
			top := rootfs(t, c, b, base, child)
			if d := diffStates(before, treeState(t, parent.Dir)); d != "" {
				t.Errorf("building the child changed the parent chain:\n%s", d)
			}
			wantContent(t, top.Dir, "etc/passwd", "changed\n")
			wantContent(t, top.Dir, "usr/bin/tool3", "#!/bin/sh\n")
			wantContent(t, top.Dir, "fifo", "was a fifo")
			wantContent(t, top.Dir, "opq/b", "b")
			for _, gone := range []string{"data/owned", "opq/a"} {
				if _, err := os.Lstat(filepath.Join(top.Dir, gone)); !os.IsNotExist(err) {
					t.Errorf("%s survived its whiteout: %v", gone, err)
				}
			}
			var st unix.Stat_t
			must(t, unix.Lstat(filepath.Join(top.Dir, "etc"), &st))
			if st.Mode&0o777 != 0o700 || st.Mtim.Sec != laterTime.Unix() {
				t.Errorf("child's etc: mode %o mtime %d, want the child layer's", st.Mode&0o777, st.Mtim.Sec)
			}
		})
	}
}

func modeName(rootless bool) string {
	if rootless {
		return "rootless"
	}
	return "privileged"
}

// TestClone: a copy and a hard-linked clone hold the same tree as their
// source; the copy shares no inode with it but keeps its internal links.
func TestClone(t *testing.T) {
	b := newBlobs()
	c := openCache(t, cacheDir(t), unpack.Options{})
	src := rootfs(t, c, b, b.layer(t, richBase)).Dir
	want := treeState(t, src)
	for _, hardlink := range []bool{false, true} {
		dst := filepath.Join(t.TempDir(), "clone")
		t.Cleanup(func() { makeRemovable(dst) })
		if err := unpack.Clone(context.Background(), src, dst, hardlink); err != nil {
			t.Fatalf("Clone(hardlink=%v): %v", hardlink, err)
		}
		if d := diffStates(want, treeState(t, dst)); d != "" {
			t.Errorf("Clone(hardlink=%v) differs from its source:\n%s", hardlink, d)
		}
		var a, s, s2 unix.Stat_t
		must(t, unix.Lstat(filepath.Join(src, "etc/passwd"), &a))
		must(t, unix.Lstat(filepath.Join(dst, "usr/bin/tool"), &s))
		must(t, unix.Lstat(filepath.Join(dst, "usr/bin/tool2"), &s2))
		if s.Ino != s2.Ino {
			t.Errorf("Clone(hardlink=%v) split the hard links tool and tool2", hardlink)
		}
		var d unix.Stat_t
		must(t, unix.Lstat(filepath.Join(dst, "etc/passwd"), &d))
		if shared := a.Ino == d.Ino; shared != hardlink {
			t.Errorf("Clone(hardlink=%v): etc/passwd shares the source's inode: %v", hardlink, shared)
		}
	}
	if err := unpack.Clone(context.Background(), src, src, false); err == nil {
		t.Error("Clone onto an existing directory succeeded")
	}
}
