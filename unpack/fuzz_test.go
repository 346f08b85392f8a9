package unpack_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/imgtool/imgtool/unpack"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fixedTop holds a second canary at a path that does not change between
// processes, so that seeds (built in one process, run in the fuzzing
// workers) can name it by absolute path.
var fixedTop = filepath.Join(os.TempDir(), "imgtool-unpack-fuzz-canary")

const fixedBody = "CANARY: the fuzzers' fixed host file\n"

// fixedEnv makes the fixed canary if it is missing (atomically, as
// several fuzzing processes may) and returns an env naming it, for
// building seeds; its root is never made.
func fixedEnv(t testing.TB) *env {
	e := &env{top: fixedTop, canary: filepath.Join(fixedTop, "canary"), canaryDir: filepath.Join(fixedTop, "canarydir")}
	e.root = filepath.Join(fixedTop, "x", "root")
	must(t, os.MkdirAll(e.canaryDir, 0o755))
	for _, p := range []string{e.canary, filepath.Join(e.canaryDir, "inner")} {
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		tmp, err := os.CreateTemp("", "imgtool-canary")
		must(t, err)
		_, err = tmp.WriteString(fixedBody)
		must(t, err)
		must(t, tmp.Chmod(0o640))
		must(t, tmp.Close())
		must(t, os.Rename(tmp.Name(), p))
	}
	return e
}

// checkFixed checks the fixed canary's content, mode, link count and
// directories (not times: several processes share it).
func checkFixed(t testing.TB, e *env) {
	t.Helper()
	for dir, want := range map[string][]string{e.top: {"canary", "canarydir"}, e.canaryDir: {"inner"}} {
		ents, err := os.ReadDir(dir)
		must(t, err)
		var names []string
		for _, d := range ents {
			names = append(names, d.Name())
		}
		if !slices.Equal(names, want) {
			t.Errorf("HOST PATH WAS CHANGED! THIS IS A PATH ESCAPE! %s holds %q", dir, names)
		}
	}
	for _, p := range []string{e.canary, filepath.Join(e.canaryDir, "inner")} {
		st := snapshot(t, p, "")[p]
		got, _ := os.ReadFile(p)
		if string(got) != fixedBody || st.Mode != 0o100640 || st.Nlink != 1 {
			t.Errorf("HOST PATH WAS CHANGED! THIS IS A PATH ESCAPE! %s: mode %o, %d links, content %.40q", p, st.Mode, st.Nlink, got)
		}
	}
}

// FuzzApply applies arbitrary bytes (a tar, or a gzip or zstd stream of
// one) with no descriptor to check, into a root next to a canary. Errors
// are fine; a panic or a changed canary is not.
func FuzzApply(f *testing.F) {
	fixed := fixedEnv(f)
	var cases []hcase
	cases = append(cases, pathCases()...)
	cases = append(cases, whiteoutCases()...)
	cases = append(cases, semanticCases()...)
	cases = append(cases, limitCases()...)
	for _, c := range cases {
		if c.lower != nil {
			f.Add(plain(c.lower)(f, fixed).Blob)
		}
		if l := c.layer(f, fixed); l.R == nil && len(l.Blob) < 64<<10 {
			f.Add(l.Blob)
		}
	}
	// Absolute escapes aim at the host's "/", where checkCanary looks for
	// the probe; relative ones at the canary two levels up.
	seed := newTar(f).symlink("l", "/").file("l/"+probe, evil).symlink("u", "../..").file("u/canary", evil).
		link("h", "../../canary").whiteout("u", "canary").opaque("u").file(".wh...", "").bytes()
	for _, kind := range []string{"none", "gzip", "zstd"} {
		f.Add(compress(f, kind, seed))
	}
	// One env per process, emptied for each input: making a fresh one
	// would take most of the time of a run.
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		e.reset(t)
		o := unpack.Options{
			Limits:   unpack.Limits{MaxBytes: 1 << 20, MaxEntries: 256, MaxPathLen: 1024},
			Rootless: len(data)%2 == 1,
		}
		unpack.Apply(context.Background(), e.root, bytes.NewReader(data), ocispec.Descriptor{}, "", o)
		e.checkCanary(t)
		checkFixed(t, fixed)
	})
}
