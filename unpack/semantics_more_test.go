package unpack_test

import (
	"archive/tar"
	"os"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/internal/rootlesscontainers"
	"github.com/imgtool/imgtool/unpack"
	"golang.org/x/sys/unix"
)

// metadataCases pin down owners and xattrs where Apply takes shortcuts:
// it skips the chown of an entry that already has its owner, and sets
// everything of a regular file through its descriptor.
func metadataCases() []hcase {
	return []hcase{{
		// A new entry takes the group of a setgid directory, not the
		// process's: an entry of 0:0 there still needs its chown.
		name: "entries in a setgid lower dir get the owner their header says",
		lower: func(b *tarB, e *env) {
			b.add(&tar.Header{Name: "sg/", Typeflag: tar.TypeDir, Mode: 0o2775, Gid: 1234}, nil)
		},
		layer: plain(func(b *tarB, e *env) {
			b.add(&tar.Header{Name: "sg/f", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("x"))
			b.add(&tar.Header{Name: "sg/d/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
			b.add(&tar.Header{Name: "sg/s", Typeflag: tar.TypeSymlink, Linkname: "f"}, nil)
			b.add(&tar.Header{Name: "sg/p", Typeflag: tar.TypeFifo, Mode: 0o600}, nil)
			b.add(&tar.Header{Name: "sg/g", Typeflag: tar.TypeReg, Mode: 0o644, Gid: 1234}, []byte("x"))
			b.add(&tar.Header{Name: "plain", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("x"))
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			if os.Geteuid() != 0 {
				// Unprivileged, every entry is the caller's; the setgid
				// dir's group is the caller's own.
				return
			}
			want := map[string]uint32{"sg": 1234, "sg/f": 0, "sg/d": 0, "sg/s": 0, "sg/p": 0, "sg/g": 1234, "plain": 0}
			for n, gid := range want {
				if st, ok := e.lstat(t, n); !ok || st.Uid != 0 || st.Gid != gid {
					t.Errorf("%s owned by %d:%d (exists %v), want 0:%d", n, st.Uid, st.Gid, ok, gid)
				}
			}
		},
	}, {
		// Unprivileged, user.* xattrs need write permission on the file:
		// they go on before the mode takes it away.
		name: "xattrs and a recorded owner on a read-only file",
		opts: unpack.Options{Rootless: true},
		layer: plain(func(b *tarB, e *env) {
			x := map[string]string{"SCHILY.xattr.user.imgtool": "kept"}
			b.add(&tar.Header{Name: "ro", Typeflag: tar.TypeReg, Mode: 0o444, Uid: 1000, Gid: 1000, PAXRecords: x}, []byte("x"))
		}),
		check: func(t *testing.T, e *env, r unpack.Report) {
			if len(r.Warnings) != 0 {
				t.Errorf("warnings %+v, want none", r.Warnings)
			}
			if got := xattrs(e.in("ro")); !strings.Contains(got, "user.imgtool=kept") {
				t.Errorf("ro: xattrs %q, want user.imgtool=kept", got)
			}
			buf := make([]byte, 64)
			sz, err := unix.Lgetxattr(e.in("ro"), rootlesscontainers.Xattr, buf)
			if err != nil {
				t.Fatalf("ro: %s: %v", rootlesscontainers.Xattr, err)
			}
			if res, err := rootlesscontainers.Decode(buf[:sz]); err != nil || res != (rootlesscontainers.Resource{UID: 1000, GID: 1000}) {
				t.Errorf("ro: recorded owner %+v (%v), want 1000:1000", res, err)
			}
			wantMode(t, e, "ro", 0o444)
			e.wantFile(t, "ro", "x")
		},
	}}
}
