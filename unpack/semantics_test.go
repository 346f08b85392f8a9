package unpack_test

import (
	"archive/tar"
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/internal/rootlesscontainers"
	"github.com/imgtool/imgtool/unpack"
	"golang.org/x/sys/unix"
)

var (
	dirTime  = time.Unix(1_500_000_000, 111_000_000)
	fileTime = time.Unix(1_400_000_000, 222_000_000)
	linkTime = time.Unix(1_300_000_000, 333_000_000)
)

// TestSemantics checks that well-formed layers give the tree the image
// spec describes (and the canary stays untouched here too).
func TestSemantics(t *testing.T) {
	runCases(t, append(semanticCases(), metadataCases()...))
}

func semanticCases() []hcase {
	return []hcase{{
		name:  "missing parents are made",
		layer: plain(func(b *tarB, e *env) { b.file("a/b/c/file", "deep") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantFile(t, "a/b/c/file", "deep") },
	}, {
		name:  "opaque whiteout keeps same-layer entries",
		lower: func(b *tarB, e *env) { b.dir("d/").file("d/old", "lower").dir("d/olddir/").file("d/olddir/x", "lower") },
		layer: plain(func(b *tarB, e *env) { b.dir("d/").file("d/new", "upper").opaque("d").file("d/after", "upper") }),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantAbsent(t, "d/old")
			e.wantAbsent(t, "d/olddir")
			e.wantFile(t, "d/new", "upper")
			e.wantFile(t, "d/after", "upper")
		},
	}, {
		name:  "opaque whiteout keeps same-layer entries in implicit subdirs",
		lower: func(b *tarB, e *env) { b.dir("d/").file("d/old", "lower") },
		layer: plain(func(b *tarB, e *env) { b.file("d/sub/new", "upper").opaque("d") }),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantAbsent(t, "d/old")
			e.wantFile(t, "d/sub/new", "upper")
		},
	}, {
		name:  "opaque whiteout hides lower content of a subdir the layer lists",
		lower: func(b *tarB, e *env) { b.dir("d/").dir("d/sub/").file("d/sub/old", "lower") },
		layer: plain(func(b *tarB, e *env) { b.dir("d/").dir("d/sub/").file("d/sub/new", "upper").opaque("d") }),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantAbsent(t, "d/sub/old")
			e.wantFile(t, "d/sub/new", "upper")
		},
	}, {
		name:  "whiteouts of a lower file and dir",
		lower: func(b *tarB, e *env) { b.file("f", "lower").dir("d/").file("d/x", "lower").file("keep", "lower") },
		layer: plain(func(b *tarB, e *env) { b.whiteout("", "f").whiteout("", "d").whiteout("", "nonexistent") }),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantAbsent(t, "f")
			e.wantAbsent(t, "d")
			e.wantFile(t, "keep", "lower")
		},
	}, {
		name:  "whiteout and re-create in one layer",
		lower: func(b *tarB, e *env) { b.dir("d/").file("d/x", "lower") },
		layer: plain(func(b *tarB, e *env) { b.whiteout("", "d").dir("d/").file("d/y", "upper") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantAbsent(t, "d/x"); e.wantFile(t, "d/y", "upper") },
	}, {
		// Fedora's /usr/bin and /usr/lib are 0555: unprivileged (as uid
		// 65534) the next layer must still add and whiteout files there.
		name: "later layer writes into a read-only lower dir",
		lower: func(b *tarB, e *env) {
			b.add(&tar.Header{Name: "ro/", Typeflag: tar.TypeDir, Mode: 0o555}, nil).file("ro/old", "lower")
		},
		layer: plain(func(b *tarB, e *env) { b.file("ro/new", "upper").whiteout("ro", "old") }),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantFile(t, "ro/new", "upper")
			e.wantAbsent(t, "ro/old")
			wantMode(t, e, "ro", 0o555)
		},
	}, {
		name:  "dir over a dir merges and takes the new mode",
		lower: func(b *tarB, e *env) { b.dir("d/").file("d/x", "lower") },
		layer: plain(func(b *tarB, e *env) { b.add(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o700}, nil) }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantFile(t, "d/x", "lower"); wantMode(t, e, "d", 0o700) },
	}, {
		name: "setuid, setgid and sticky modes",
		layer: plain(func(b *tarB, e *env) {
			b.add(&tar.Header{Name: "suid", Typeflag: tar.TypeReg, Mode: 0o4755, Gid: os.Getegid()}, []byte("x"))
			b.add(&tar.Header{Name: "sgid", Typeflag: tar.TypeReg, Mode: 0o2755, Gid: os.Getegid()}, []byte("x"))
			b.add(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil)
			b.add(&tar.Header{Name: "ro/", Typeflag: tar.TypeDir, Mode: 0o500}, nil).file("ro/f", "x")
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			wantMode(t, e, "suid", 0o4755)
			wantMode(t, e, "sgid", 0o2755)
			wantMode(t, e, "tmp", 0o1777)
			wantMode(t, e, "ro", 0o500)
		},
	}, {
		name: "mtimes of files, dirs and symlinks",
		layer: plain(func(b *tarB, e *env) {
			b.add(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, ModTime: dirTime, Format: tar.FormatPAX}, nil)
			b.add(&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, ModTime: fileTime, Format: tar.FormatPAX}, []byte("x"))
			b.add(&tar.Header{Name: "d/s", Typeflag: tar.TypeSymlink, Linkname: "f", ModTime: linkTime, Format: tar.FormatPAX}, nil)
			b.add(&tar.Header{Name: "d/sub/", Typeflag: tar.TypeDir, ModTime: dirTime, Format: tar.FormatPAX}, nil)
			b.file("d/sub/late", "made after its dir")
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			wantMtime(t, e, "d", dirTime)
			wantMtime(t, e, "d/f", fileTime)
			wantMtime(t, e, "d/s", linkTime)
			wantMtime(t, e, "d/sub", dirTime)
		},
	}, {
		name: "xattrs on files and dirs",
		layer: plain(func(b *tarB, e *env) {
			x := map[string]string{"SCHILY.xattr.user.imgtool": "kept"}
			b.add(&tar.Header{Name: "f", Typeflag: tar.TypeReg, PAXRecords: x}, []byte("x"))
			b.add(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, PAXRecords: x}, nil)
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			for _, n := range []string{"f", "d"} {
				if got := xattrs(e.in(n)); !strings.Contains(got, "user.imgtool=kept") {
					t.Errorf("%s: xattrs %q, want user.imgtool=kept", n, got)
				}
			}
		},
	}, {
		name: "privileged xattrs rootless are skipped with a warning",
		opts: unpack.Options{Rootless: true},
		layer: plain(func(b *tarB, e *env) {
			// VFS_CAP_REVISION_2, effective, permitted CAP_NET_BIND_SERVICE.
			capv := string([]byte{1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
			x := map[string]string{"SCHILY.xattr.security.capability": capv, "SCHILY.xattr.user.ok": "1"}
			b.add(&tar.Header{Name: "ping", Typeflag: tar.TypeReg, Mode: 0o755, PAXRecords: x}, []byte("x"))
		}),
		check: func(t *testing.T, e *env, r unpack.Report) {
			if got := xattrs(e.in("ping")); !strings.Contains(got, "user.ok=1") {
				t.Errorf("ping: xattrs %q, want user.ok=1", got)
			}
			if os.Geteuid() != 0 {
				wantWarnings(t, r, "ping")
			}
		},
	}, {
		name:  "rootless records owners in user.rootlesscontainers",
		opts:  unpack.Options{Rootless: true},
		layer: plain(owned),
		check: func(t *testing.T, e *env, r unpack.Report) { wantRecordedOwners(t, e) },
	}, {
		name:  "owners are set when privileged, recorded otherwise",
		layer: plain(owned),
		check: func(t *testing.T, e *env, r unpack.Report) {
			if os.Geteuid() != 0 {
				wantRecordedOwners(t, e)
				return
			}
			for _, n := range []string{"f", "d", "fifo"} {
				if st, _ := e.lstat(t, n); st.Uid != 1000 || st.Gid != 1000 {
					t.Errorf("%s owned by %d:%d, want 1000:1000", n, st.Uid, st.Gid)
				}
			}
			wantMode(t, e, "f", 0o4755)
		},
	}, {
		name:  "device nodes when not rootless",
		layer: plain(func(b *tarB, e *env) { b.dev("dev/null", tar.TypeChar, 1, 3).dev("dev/loop9", tar.TypeBlock, 7, 9) }),
		check: func(t *testing.T, e *env, r unpack.Report) {
			if os.Geteuid() != 0 {
				e.wantAbsent(t, "dev/null")
				wantWarnings(t, r, "null", "loop9")
				return
			}
			for n, dev := range map[string]uint64{"dev/null": unix.Mkdev(1, 3), "dev/loop9": unix.Mkdev(7, 9)} {
				if st, _ := e.lstat(t, n); st.Rdev != dev || st.Mode&0o777 != 0o666 {
					t.Errorf("%s: rdev %x mode %o, want %x 0666", n, st.Rdev, st.Mode, dev)
				}
			}
		},
	}, {
		name: "hard links and symlinks as stored",
		layer: plain(func(b *tarB, e *env) {
			b.file("f", "x").link("h", "/f").symlink("s", "/etc/passwd").symlink("r", "../../f")
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantSameFile(t, "f", "h")
			e.wantLink(t, "s", "/etc/passwd")
			e.wantLink(t, "r", "../../f")
		},
	}, {
		name:  "sparse entry",
		layer: plain(func(b *tarB, e *env) { b.sparse("sparse", 1<<20, 4096, []byte("data")) }),
		check: func(t *testing.T, e *env, r unpack.Report) {
			want := make([]byte, 1<<20)
			copy(want[4096:], "data")
			e.wantFile(t, "sparse", string(want))
		},
	}, {
		name:  "old GNU sparse entry",
		layer: plain(func(b *tarB, e *env) { b.oldSparse("oldsparse", 1<<20, 4096, []byte("data")) }),
		check: func(t *testing.T, e *env, r unpack.Report) {
			want := make([]byte, 1<<20)
			copy(want[4096:], "data")
			e.wantFile(t, "oldsparse", string(want))
		},
	}, {
		name: "exactly at MaxEntries and MaxBytes",
		opts: unpack.Options{Limits: unpack.Limits{MaxEntries: 4, MaxBytes: 1000}},
		layer: plain(func(b *tarB, e *env) {
			b.dir("d/").file("d/a", strings.Repeat("a", 500)).file("d/b", strings.Repeat("b", 500)).whiteout("", "x")
		}),
		check: func(t *testing.T, e *env, r unpack.Report) {
			if r.Entries != 4 || r.Bytes != 1000 {
				t.Errorf("report %+v, want 4 entries and 1000 bytes", r)
			}
		},
	}}
}

// owned is a layer whose entries belong to 1000:1000.
func owned(b *tarB, e *env) {
	b.add(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 1000, Gid: 1000}, []byte("x"))
	b.add(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Uid: 1000, Gid: 1000}, nil)
	b.add(&tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o600, Uid: 1000, Gid: 1000}, nil)
	b.add(&tar.Header{Name: "root", Typeflag: tar.TypeReg}, nil)
}

func wantRecordedOwners(t *testing.T, e *env) {
	t.Helper()
	// user.* xattrs only go on files and dirs: the fifo's owner is lost.
	for _, n := range []string{"f", "d"} {
		st, _ := e.lstat(t, n)
		if int(st.Uid) != os.Geteuid() {
			t.Errorf("%s owned by uid %d, want the caller's %d", n, st.Uid, os.Geteuid())
		}
		buf := make([]byte, 64)
		sz, err := unix.Lgetxattr(e.in(n), rootlesscontainers.Xattr, buf)
		if err != nil {
			t.Errorf("%s: %s: %v", n, rootlesscontainers.Xattr, err)
			continue
		}
		if res, err := rootlesscontainers.Decode(buf[:sz]); err != nil || res != (rootlesscontainers.Resource{UID: 1000, GID: 1000}) {
			t.Errorf("%s: recorded owner %+v (%v), want 1000:1000", n, res, err)
		}
	}
	buf := make([]byte, 64)
	if sz, err := unix.Lgetxattr(e.in("root"), rootlesscontainers.Xattr, buf); err == nil {
		if res, _ := rootlesscontainers.Decode(buf[:sz]); res != (rootlesscontainers.Resource{}) {
			t.Errorf("root-owned file records owner %+v", res)
		}
	}
}

func wantMtime(t *testing.T, e *env, name string, want time.Time) {
	t.Helper()
	st, ok := e.lstat(t, name)
	if got := time.Unix(st.Mtim.Unix()); !ok || !got.Equal(want) {
		t.Errorf("%s: mtime %v (exists %v), want %v", name, got, ok, want)
	}
}

// TestCompressions applies the same layer gzip, zstd and uncompressed.
func TestCompressions(t *testing.T) {
	for _, kind := range []string{"none", "gzip", "zstd"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			defer e.checkCanary(t)
			body := bytes.Repeat([]byte("0123456789"), 100_000)
			l := mkLayer(t, kind, newTar(t).dir("etc/").file("etc/big", string(body)).symlink("big", "etc/big").bytes())
			r, err := apply(e.root, l, unpack.Options{})
			if err != nil {
				t.Fatal(err)
			}
			e.wantFile(t, "etc/big", string(body))
			e.wantLink(t, "big", "etc/big")
			if r.Entries != 3 || r.Bytes != int64(len(body)) {
				t.Errorf("report %+v, want 3 entries and %d bytes", r, len(body))
			}
		})
	}
}
