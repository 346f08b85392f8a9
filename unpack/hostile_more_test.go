package unpack_test

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/unpack"
	"github.com/opencontainers/go-digest"
)

// lowerKeep is a lower layer that whiteouts of the root must leave alone.
func lowerKeep(b *tarB, e *env) {
	b.file("keep", "lower").dir("sub/").file("sub/keep", "lower")
}

func wantKept(t *testing.T, e *env, _ unpack.Report) {
	t.Helper()
	e.wantFile(t, "keep", "lower")
	e.wantFile(t, "sub/keep", "lower")
}

func whiteoutCases() []hcase {
	var cases []hcase
	for _, name := range []string{".wh.", ".wh..", ".wh...", "sub/.wh..", "sub/.wh...", "../.wh...", "/.wh..", "sub/../.wh..."} {
		cases = append(cases, hcase{
			name:  "whiteout named " + name,
			lower: lowerKeep,
			layer: plain(func(b *tarB, e *env) { b.file(name, "") }),
			want:  unpack.ErrUnsafe,
			check: wantKept,
		})
	}
	return append(cases, hcase{
		name:  "whiteout climbing ../../.wh.canary",
		lower: func(b *tarB, e *env) { b.file("canary", "lower") },
		layer: plain(func(b *tarB, e *env) { b.file("../../.wh.canary", "") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantAbsent(t, "canary") },
	}, hcase{
		name:  "whiteout of a symlink to / removes the link only",
		lower: func(b *tarB, e *env) { lowerKeep(b, e); b.symlink("r", "/").symlink("c", e.canaryDir) },
		layer: plain(func(b *tarB, e *env) { b.whiteout("", "r").whiteout("", "c") }),
		check: func(t *testing.T, e *env, r unpack.Report) {
			wantKept(t, e, r)
			e.wantAbsent(t, "r")
			e.wantAbsent(t, "c")
		},
	}, hcase{
		name:  "whiteout through a symlink outside",
		lower: func(b *tarB, e *env) { b.dirs(e.top).file(e.canary, "lower").symlink("l", e.top) },
		layer: plain(func(b *tarB, e *env) { b.whiteout("l", "canary") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantAbsent(t, e.canary); e.wantLink(t, "l", e.top) },
	}, hcase{
		name:  "whiteout through a symlink ../..",
		lower: func(b *tarB, e *env) { b.file("canary", "lower").symlink("up", "../..") },
		layer: plain(func(b *tarB, e *env) { b.whiteout("up", "canary") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantAbsent(t, "canary") },
	}, hcase{
		name:  "whiteout through a dangling symlink",
		lower: func(b *tarB, e *env) { b.symlink("l", e.top) },
		layer: plain(func(b *tarB, e *env) { b.whiteout("l", "canary") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantLink(t, "l", e.top) },
	}, hcase{
		name:  "opaque whiteout at the root",
		lower: lowerKeep,
		layer: plain(func(b *tarB, e *env) { b.file("new", "same layer").opaque("") }),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantDir(t, ".")
			e.wantAbsent(t, "keep")
			e.wantAbsent(t, "sub")
			e.wantFile(t, "new", "same layer")
		},
	}, hcase{
		name:  "opaque whiteout ../.wh..wh..opq is the root's",
		lower: lowerKeep,
		layer: plain(func(b *tarB, e *env) { b.file("../.wh..wh..opq", "") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantDir(t, "."); e.wantAbsent(t, "keep") },
	}, hcase{
		name: "opaque whiteout under a symlink outside",
		lower: func(b *tarB, e *env) {
			b.dirs(e.canaryDir).file(e.canaryDir+"/inner", "lower").symlink("l", e.canaryDir)
		},
		layer: plain(func(b *tarB, e *env) { b.opaque("l") }),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantAbsent(t, e.canaryDir+"/inner")
			e.wantDir(t, e.canaryDir)
			e.wantLink(t, "l", e.canaryDir)
		},
	}, hcase{
		name:  "opaque whiteout under a dangling symlink outside",
		lower: func(b *tarB, e *env) { b.symlink("l", e.canaryDir) },
		layer: plain(func(b *tarB, e *env) { b.opaque("l") }),
		want:  errEither,
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantLink(t, "l", e.canaryDir) },
	})
}

// garbage follows a compressed stream.
var garbage = bytes.Repeat([]byte("GARBAGE!"), 512)

func withGarbage(kind string, junk []byte, describeJunk bool) func(testing.TB, *env) testLayer {
	return func(t testing.TB, e *env) testLayer {
		l := mkLayer(t, kind, newTar(t).file("f", "content").bytes())
		full := append(append([]byte(nil), l.Blob...), junk...)
		if describeJunk {
			l.Desc.Digest, l.Desc.Size = digest.FromBytes(full), int64(len(full))
		}
		l.Blob = full
		return l
	}
}

func mismatch(kind string, f func(l *testLayer)) func(testing.TB, *env) testLayer {
	return func(t testing.TB, e *env) testLayer {
		l := mkLayer(t, kind, newTar(t).file("f", "content").bytes())
		f(&l)
		return l
	}
}

func limitCases() []hcase {
	long := strings.Repeat("a/", 2100) + "f"
	small := unpack.Options{Limits: unpack.Limits{MaxBytes: 64 << 20}}
	smallOnDisk := func(t *testing.T, e *env, _ unpack.Report) {
		apparent, allocated := usage(e.root)
		if apparent > 64<<20 || allocated > 65<<20 {
			t.Errorf("the bomb left %d bytes (%d allocated) in the root, want at most 64 MiB", apparent, allocated)
		}
	}
	cases := []hcase{{
		name:  "name longer than MaxPathLen",
		layer: plain(func(b *tarB, e *env) { b.file(long, evil) }),
		want:  unpack.ErrLimit,
	}, {
		name:  "symlink target longer than MaxPathLen",
		layer: plain(func(b *tarB, e *env) { b.symlink("s", long) }),
		want:  unpack.ErrLimit,
	}, {
		name:  "hardlink target longer than MaxPathLen",
		layer: plain(func(b *tarB, e *env) { b.file("f", "x").link("h", "./"+long) }),
		want:  unpack.ErrLimit,
	}, {
		name:  "name longer than a small MaxPathLen",
		opts:  unpack.Options{Limits: unpack.Limits{MaxPathLen: 64}},
		layer: plain(func(b *tarB, e *env) { b.file(strings.Repeat("n", 65), "x") }),
		want:  unpack.ErrLimit,
	}, {
		name: "too many entries",
		opts: unpack.Options{Limits: unpack.Limits{MaxEntries: 16}},
		layer: plain(func(b *tarB, e *env) {
			for i := range 17 {
				b.file(strings.Repeat("e", i+1), "")
			}
		}),
		want: unpack.ErrLimit,
	}, {
		name:  "files past MaxBytes",
		opts:  unpack.Options{Limits: unpack.Limits{MaxBytes: 1000}},
		layer: plain(func(b *tarB, e *env) { b.file("a", strings.Repeat("a", 600)).file("b", strings.Repeat("b", 600)) }),
		want:  unpack.ErrLimit,
	}, {
		name:  "4 GiB sparse entry",
		opts:  small,
		layer: plain(func(b *tarB, e *env) { b.sparse("sparse", 4<<30, 1<<30, []byte("data")) }),
		want:  unpack.ErrLimit,
		check: smallOnDisk,
	}, {
		name:  "4 GiB old GNU sparse entry",
		opts:  small,
		layer: plain(func(b *tarB, e *env) { b.oldSparse("sparse", 4<<30, 1<<30, []byte("data")) }),
		want:  unpack.ErrLimit,
		check: smallOnDisk,
	}, {
		name: "4 GiB entry with truncated data",
		opts: small,
		layer: func(t testing.TB, e *env) testLayer {
			b := newTar(t)
			must(t, b.tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4 << 30}))
			_, err := b.tw.Write(make([]byte, 4096))
			must(t, err)
			return testLayer{Blob: b.truncated()}
		},
		want:  unpack.ErrLimit,
		check: smallOnDisk,
	}, {
		name:  "digest mismatch",
		layer: mismatch("gzip", func(l *testLayer) { l.Desc.Digest = digest.FromString("another blob") }),
		want:  store.ErrMismatch,
	}, {
		name:  "size mismatch, short",
		layer: mismatch("zstd", func(l *testLayer) { l.Desc.Size++ }),
		want:  store.ErrMismatch,
	}, {
		name:  "size mismatch, long",
		layer: mismatch("none", func(l *testLayer) { l.Desc.Size-- }),
		want:  store.ErrMismatch,
	}, {
		name: "corrupted byte in the gzip stream",
		layer: mismatch("gzip", func(l *testLayer) {
			l.Blob = append([]byte(nil), l.Blob...)
			l.Blob[len(l.Blob)-10] ^= 0xff
		}),
		want: store.ErrMismatch,
	}, {
		name:  "diffID mismatch, zstd",
		layer: mismatch("zstd", func(l *testLayer) { l.DiffID = digest.FromString("another tar") }),
		want:  store.ErrMismatch,
	}, {
		name:  "diffID mismatch, uncompressed",
		layer: mismatch("none", func(l *testLayer) { l.DiffID = digest.FromString("another tar") }),
		want:  store.ErrMismatch,
	}, {
		name:  "garbage appended after the descriptor was made",
		layer: withGarbage("gzip", garbage, false),
		want:  store.ErrMismatch,
	}}
	for _, kind := range []string{"gzip", "zstd"} {
		cases = append(cases, hcase{
			name:  "trailing garbage after the " + kind + " stream",
			layer: withGarbage(kind, garbage, true),
			want:  errAny,
		}, hcase{
			name:  "trailing zeros after the " + kind + " stream",
			layer: withGarbage(kind, make([]byte, 4096), true),
			want:  errAny,
		}, hcase{
			name:  kind + " bomb: one 3 GiB entry",
			opts:  small,
			layer: func(t testing.TB, e *env) testLayer { return bomb(t, kind, 1, 3<<30) },
			want:  unpack.ErrLimit,
			check: smallOnDisk,
		}, hcase{
			name:  kind + " bomb: 96 entries of 32 MiB",
			opts:  small,
			layer: func(t testing.TB, e *env) testLayer { return bomb(t, kind, 96, 32<<20) },
			want:  unpack.ErrLimit,
			check: smallOnDisk,
		}, hcase{
			name:  kind + " bomb: 3 GiB after the end of the tar",
			opts:  small,
			layer: func(t testing.TB, e *env) testLayer { return bomb(t, kind, 0, 3<<30) },
			want:  unpack.ErrLimit,
		})
	}
	return append(cases, hcase{
		name: "trailing garbage after an uncompressed tar, described",
		layer: func(t testing.TB, e *env) testLayer {
			return mkLayer(t, "none", append(newTar(t).file("f", "content").bytes(), garbage...))
		},
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantFile(t, "f", "content") },
	}, hcase{
		name: "more than 1 MiB after an uncompressed tar",
		layer: func(t testing.TB, e *env) testLayer {
			return mkLayer(t, "none", append(newTar(t).file("f", "content").bytes(), bytes.Repeat(garbage, 300)...))
		},
		want: unpack.ErrLimit,
	})
}
