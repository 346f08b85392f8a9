package unpack_test

import (
	"archive/tar"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/unpack"
	"golang.org/x/sys/unix"
)

// Outcomes a case may want besides nil and a sentinel error.
var (
	errAny = errors.New("some error")
	// errEither: erroring and succeeding are both safe; the check holds
	// in both outcomes.
	errEither = errors.New("an error or a contained result")
)

const evil = "EVIL: written by the layer\n"

// hcase applies lower (if any, with the same Rootless option) and then
// layer into a fresh env, wants the outcome want, runs check and then
// checks that nothing outside the root changed.
type hcase struct {
	name  string
	lower func(b *tarB, e *env)
	layer func(t testing.TB, e *env) testLayer
	opts  unpack.Options
	want  error
	check func(t *testing.T, e *env, r unpack.Report)
}

// tarOf turns a tar-building function into a layer of compression kind.
func tarOf(kind string, f func(b *tarB, e *env)) func(testing.TB, *env) testLayer {
	return func(t testing.TB, e *env) testLayer {
		b := newTar(t)
		f(b, e)
		return mkLayer(t, kind, b.bytes())
	}
}

func plain(f func(b *tarB, e *env)) func(testing.TB, *env) testLayer { return tarOf("none", f) }

func runCases(t *testing.T, cases []hcase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			defer e.checkCanary(t)
			if c.lower != nil {
				if _, err := apply(e.root, plain(c.lower)(t, e), unpack.Options{Rootless: c.opts.Rootless}); err != nil {
					t.Fatalf("lower layer: %v", err)
				}
			}
			start := time.Now()
			r, err := apply(e.root, c.layer(t, e), c.opts)
			t.Logf("OUTCOME %-8s err=%v entries=%d bytes=%d warnings=%v (%v)", wantName(c.want), err, r.Entries, r.Bytes, r.Warnings, time.Since(start).Round(time.Millisecond))
			switch c.want {
			case nil:
				if err != nil {
					t.Errorf("Apply: %v, want success", err)
				}
			case errAny:
				if err == nil {
					t.Errorf("Apply succeeded, want an error")
				}
			case errEither:
			default:
				if !errors.Is(err, c.want) {
					t.Errorf("Apply: %v, want %v", err, c.want)
				}
			}
			if c.check != nil {
				c.check(t, e, r)
			}
		})
	}
}

func wantName(err error) string {
	switch err {
	case nil:
		return "ok"
	case unpack.ErrUnsafe:
		return "ErrUnsafe"
	case unpack.ErrLimit:
		return "ErrLimit"
	case errAny:
		return "error"
	case errEither:
		return "either"
	}
	return "Mismatch"
}

// TestHostile runs the hostile-layer corpus: each case must leave the
// canary outside the root untouched and end in the safe outcome.
func TestHostile(t *testing.T) {
	var cases []hcase
	cases = append(cases, pathCases()...)
	cases = append(cases, whiteoutCases()...)
	cases = append(cases, limitCases()...)
	runCases(t, cases)
}

// TestHostileWalk runs the corpus and the semantic cases again with paths
// resolved as on kernels without openat2 (before Linux 5.6).
func TestHostileWalk(t *testing.T) {
	unpack.ForceWalk(true)
	defer unpack.ForceWalk(false)
	cases := append(pathCases(), whiteoutCases()...)
	cases = append(cases, limitCases()...)
	runCases(t, append(cases, semanticCases()...))
}

func pathCases() []hcase {
	return []hcase{{
		name:  "traversal ../../canary",
		layer: plain(func(b *tarB, e *env) { b.file("../../canary", evil) }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantFile(t, "canary", evil) },
	}, {
		name: "traversal deep and dotted",
		layer: plain(func(b *tarB, e *env) {
			b.file(strings.Repeat("../", 40)+probe, evil)
			b.file("./.././../canarydir/inner", evil)
			b.dir("../../../x/")
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantFile(t, probe, evil)
			e.wantFile(t, "canarydir/inner", evil)
			e.wantDir(t, "x")
		},
	}, {
		name: "absolute names",
		layer: plain(func(b *tarB, e *env) {
			b.file(e.canary, evil)
			b.file("/"+probe, evil)
			b.file("/../../"+probe+"2", evil)
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantFile(t, e.canary, evil)
			e.wantFile(t, probe, evil)
			e.wantFile(t, probe+"2", evil)
		},
	}, {
		name: "symlink to the canary's dir then write through",
		layer: plain(func(b *tarB, e *env) {
			b.dirs(e.top).symlink("l", e.top).file("l/canary", evil)
			b.symlink("d", e.canaryDir).dirs(e.canaryDir).file("d/inner", evil)
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantFile(t, e.canary, evil)
			e.wantFile(t, e.canaryDir+"/inner", evil)
			e.wantLink(t, "l", e.top)
		},
	}, {
		name: "symlink to / then write through",
		layer: plain(func(b *tarB, e *env) {
			b.symlink("l", "/").file("l/"+probe, evil).symlink("m", "/..").file("m/canary", evil)
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantFile(t, probe, evil); e.wantFile(t, "canary", evil) },
	}, {
		name:  "symlink ../.. then write through",
		layer: plain(func(b *tarB, e *env) { b.symlink("up", "../..").file("up/canary", evil) }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantFile(t, "canary", evil) },
	}, {
		name:  "symlink to a dir missing in the root then write through",
		layer: plain(func(b *tarB, e *env) { b.symlink("l", e.top).file("l/canary", evil) }),
		want:  errAny,
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantAbsent(t, e.canary) },
	}, {
		name: "file over a symlink to the canary",
		layer: plain(func(b *tarB, e *env) {
			b.symlink("l", e.canary).file("l", evil)
			b.symlink("r", "../../canary").file("r", evil)
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantFile(t, "l", evil); e.wantFile(t, "r", evil) },
	}, {
		name: "symlink metadata is not applied to its target",
		layer: plain(func(b *tarB, e *env) {
			for name, target := range map[string]string{"l": e.canary, "ld": e.canaryDir, "lr": "../../canary"} {
				b.add(&tar.Header{Name: name, Linkname: target, Typeflag: tar.TypeSymlink, Mode: 0o777,
					Uid: 1000, Gid: 1000, ModTime: time.Unix(1000, 0), AccessTime: time.Unix(1000, 0)}, nil)
			}
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantLink(t, "l", e.canary) },
	}, {
		name: "symlink metadata is not applied to its target, rootless",
		opts: unpack.Options{Rootless: true},
		layer: plain(func(b *tarB, e *env) {
			b.add(&tar.Header{Name: "l", Linkname: e.canary, Typeflag: tar.TypeSymlink, Uid: 1000, Gid: 1000, ModTime: time.Unix(1000, 0)}, nil)
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantLink(t, "l", e.canary) },
	}, {
		name: "dir entry over a symlink to the canary's dir",
		layer: plain(func(b *tarB, e *env) {
			b.symlink("l", e.canaryDir)
			b.add(&tar.Header{Name: "l/", Typeflag: tar.TypeDir, Mode: 0o777, Uid: 1000, ModTime: time.Unix(1000, 0)}, nil)
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantDir(t, "l") },
	}, {
		name: "deferred dir metadata after the dir became a symlink",
		layer: plain(func(b *tarB, e *env) {
			b.add(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o700, ModTime: time.Unix(1000, 0)}, nil)
			b.file("d/f", "x")
			b.symlink("d", e.canaryDir)
			b.add(&tar.Header{Name: "r/", Typeflag: tar.TypeDir, Mode: 0o700, ModTime: time.Unix(1000, 0)}, nil)
			b.symlink("r", "../../canarydir")
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantLink(t, "d", e.canaryDir)
			e.wantLink(t, "r", "../../canarydir")
		},
	}, {
		name:  "root replaced by a symlink then written through",
		layer: plain(func(b *tarB, e *env) { b.symlink("./", e.top).symlink("/", e.top).file("canary", evil) }),
		want:  errEither,
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantDir(t, ".") },
	}, {
		name: "root replaced by a file",
		layer: plain(func(b *tarB, e *env) {
			for _, name := range []string{"/", "../", "./", ".", ".."} {
				b.raw(rawHeader(name, tar.TypeReg, 0))
			}
			b.file("..", evil).file(".", evil)
		}),
		want:  errEither,
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantDir(t, ".") },
	}, {
		name:  "hardlink through a symlink outside, target missing in root",
		layer: plain(func(b *tarB, e *env) { b.symlink("l", e.top).link("h", "l/canary") }),
		want:  errAny,
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantAbsent(t, "h") },
	}, {
		name: "hardlink through a symlink outside, target in root",
		layer: plain(func(b *tarB, e *env) {
			b.dirs(e.top).file(e.canary, "inner copy").symlink("l", e.top).link("h", "l/canary")
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantSameFile(t, "h", e.canary)
			e.wantFile(t, "h", "inner copy")
		},
	}, {
		name:  "hardlink to the canary by absolute path",
		layer: plain(func(b *tarB, e *env) { b.link("h", e.canary) }),
		want:  errAny,
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantAbsent(t, "h") },
	}, {
		name:  "hardlink to the canary by relative path",
		layer: plain(func(b *tarB, e *env) { b.link("h", "../../canary") }),
		want:  errAny,
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantAbsent(t, "h") },
	}, {
		name:  "hardlink by relative path to a file in root",
		layer: plain(func(b *tarB, e *env) { b.file("canary", "mine").link("h", "../../canary") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantSameFile(t, "h", "canary") },
	}, {
		name:  "hardlink to a symlink to the canary links the symlink",
		layer: plain(func(b *tarB, e *env) { b.symlink("s", e.canary).link("h", "s") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantLink(t, "h", e.canary); e.wantSameFile(t, "h", "s") },
	}, {
		name:  "hardlink to the root",
		layer: plain(func(b *tarB, e *env) { b.link("h", "/") }),
		want:  errAny,
	}, {
		name:  "hardlink to a directory",
		layer: plain(func(b *tarB, e *env) { b.dir("d/").link("h", "d") }),
		want:  errAny,
	}, {
		name:  "symlink loop then write through",
		layer: plain(func(b *tarB, e *env) { b.symlink("a", "b").symlink("b", "a").file("a/x", evil) }),
		want:  errAny,
	}, {
		name:  "self symlink then write through",
		layer: plain(func(b *tarB, e *env) { b.symlink("s", "s").symlink("t", "/t").file("s/f", evil) }),
		want:  errAny,
	}, {
		name:  "file over a looping symlink",
		layer: plain(func(b *tarB, e *env) { b.symlink("a", "b").symlink("b", "a").file("a", evil) }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantFile(t, "a", evil); e.wantLink(t, "b", "a") },
	}, {
		name: "device nodes rootless are skipped with a warning",
		opts: unpack.Options{Rootless: true},
		layer: plain(func(b *tarB, e *env) {
			b.dev("dev/null", tar.TypeChar, 1, 3).dev("dev/vda", tar.TypeBlock, 253, 0)
			b.fifo("dev/fifo").file("dev/after", "ok")
		}),
		check: func(t *testing.T, e *env, r unpack.Report) {
			e.wantAbsent(t, "dev/null")
			e.wantAbsent(t, "dev/vda")
			e.wantType(t, "dev/fifo", unix.S_IFIFO)
			e.wantFile(t, "dev/after", "ok")
			wantWarnings(t, r, "null", "vda")
		},
	}, {
		name: "duplicate entries, last wins",
		layer: plain(func(b *tarB, e *env) {
			b.file("f", "one").file("f", "two")
			b.symlink("s", "a").symlink("s", "b")
			b.add(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o700}, nil)
			b.add(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o750}, nil)
			b.file("h", "three").link("h2", "h").file("h2", "four")
		}),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantFile(t, "f", "two")
			e.wantLink(t, "s", "b")
			wantMode(t, e, "d", 0o750)
			e.wantFile(t, "h", "three")
			e.wantFile(t, "h2", "four")
		},
	}, {
		name:  "file replaces a dir of the same layer",
		layer: plain(func(b *tarB, e *env) { b.dir("d/").file("d/x", "x").dir("d/sub/").file("d", "file") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantFile(t, "d", "file") },
	}, {
		name:  "file replaces a dir of a lower layer",
		lower: func(b *tarB, e *env) { b.dir("d/").dir("d/x/").file("d/x/y", "y") },
		layer: plain(func(b *tarB, e *env) { b.file("d", "file") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantFile(t, "d", "file") },
	}, {
		name:  "dir replaces a file",
		lower: func(b *tarB, e *env) { b.file("e", "lower") },
		layer: plain(func(b *tarB, e *env) { b.file("f", "same layer").dir("e/").file("e/y", "y").dir("f/") }),
		check: func(t *testing.T, e *env, _ unpack.Report) { e.wantFile(t, "e/y", "y"); e.wantDir(t, "f") },
	}, {
		name:  "symlink replaces a lower dir, then write through it",
		lower: func(b *tarB, e *env) { b.dir("d/").file("d/x", "x") },
		layer: plain(func(b *tarB, e *env) { b.dirs(e.canaryDir).symlink("d", e.canaryDir).file("d/inner", evil) }),
		check: func(t *testing.T, e *env, _ unpack.Report) {
			e.wantLink(t, "d", e.canaryDir)
			e.wantFile(t, e.canaryDir+"/inner", evil)
		},
	}}
}

func wantWarnings(t *testing.T, r unpack.Report, paths ...string) {
	t.Helper()
	for _, p := range paths {
		found := false
		for _, w := range r.Warnings {
			found = found || strings.Contains(w.Path, p)
		}
		if !found {
			t.Errorf("no warning about %s in %+v", p, r.Warnings)
		}
	}
}

func wantMode(t *testing.T, e *env, name string, mode uint32) {
	t.Helper()
	if st, ok := e.lstat(t, name); !ok || st.Mode&0o7777 != mode {
		t.Errorf("%s: mode %o (exists %v), want %o", name, st.Mode&0o7777, ok, mode)
	}
}
