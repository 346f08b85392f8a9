package build

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/store"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// cachedBuild builds with the step cache in cacheDir and returns the
// result, the instructions that ran (not CACHED), and the progress.
func cachedBuild(t *testing.T, s *store.Store, cacheDir, ctxDir, dockerfile string, mod func(*Request)) (Result, []string, string) {
	t.Helper()
	c, err := OpenCache(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	b := &Builder{Store: s, Executor: unshareExecutor{}, TempDir: filepath.Join(t.TempDir(), "tmp"), Progress: &out, Cache: c}
	req := Request{ContextDir: ctxDir, Dockerfile: []byte(dockerfile)}
	if mod != nil {
		mod(&req)
	}
	res, err := b.Build(context.Background(), req)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	return res, ranSteps(out.String()), out.String()
}

var stepLine = regexp.MustCompile(`^#(\d+) \[[^\]]+\] (.*)$`)

// ranSteps lists the instructions of a progress output that ran: shown
// as a step and not followed by CACHED.
func ranSteps(out string) []string {
	names := map[string]string{}
	var order []string
	cached := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if m := stepLine.FindStringSubmatch(l); m != nil {
			names[m[1]] = m[2]
			order = append(order, m[1])
		} else if n, ok := strings.CutSuffix(l, " CACHED"); ok {
			cached[strings.TrimPrefix(n, "#")] = true
		}
	}
	var ran []string
	for _, n := range order {
		if !cached[n] && !strings.HasPrefix(names[n], "FROM ") {
			ran = append(ran, names[n])
		}
	}
	return ran
}

const cacheDockerfile = `FROM base:1
ARG V
COPY app/ /app/
RUN echo "$V" > /v
ENV E=1
COPY --chown=app:staff conf /conf
COPY --exclude=*.tmp data/ /data/
RUN cat /conf > /c
`

// TestCacheKeys: what changes a step's key, so that it and every step
// after it run again, and what does not.
func TestCacheKeys(t *testing.T) {
	after := func(i int) []string {
		steps := []string{"COPY app/ /app/", `RUN echo "$V" > /v`, "COPY --chown=app:staff conf /conf", "COPY --exclude=*.tmp data/ /data/", "RUN cat /conf > /c"}
		return steps[i:]
	}
	for _, tc := range []struct {
		name       string
		change     func(t *testing.T, dir string)
		dockerfile string // "" : unchanged
		args       map[string]string
		ran        []string
	}{
		{name: "nothing", ran: nil},
		{name: "unused build arg", args: map[string]string{"V": "1", "UNUSED": "x"}, ran: nil},
		{name: "ignored file changed", change: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "app/debug.log"), "more") }, ran: nil},
		{name: "ignored file added", change: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "app/new.log"), "new") }, ran: nil},
		{name: "excluded file changed", change: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "data/x.tmp"), "changed") }, ran: nil},
		{name: "file outside any COPY changed", change: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "README"), "changed") }, ran: nil},
		{name: "mtime only", change: func(t *testing.T, dir string) {
			when := time.Now().Add(-time.Hour)
			must(t, os.Chtimes(filepath.Join(dir, "app/main"), when, when))
		}, ran: nil},
		{name: "content, same size", change: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "app/main"), "mAin") }, ran: after(0)},
		{name: "file added", change: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "app/other"), "x") }, ran: after(0)},
		{name: "mode", change: func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, "app/main"), 0o755)) }, ran: after(0)},
		{name: "symlink target", change: func(t *testing.T, dir string) {
			must(t, os.Remove(filepath.Join(dir, "app/link")))
			must(t, os.Symlink("other-target", filepath.Join(dir, "app/link")))
		}, ran: after(0)},
		{name: "used build arg", args: map[string]string{"V": "2"}, ran: after(1)},
		{name: "ENV", dockerfile: strings.Replace(cacheDockerfile, "ENV E=1", "ENV E=2", 1), ran: after(2)},
		{name: "chown", dockerfile: strings.Replace(cacheDockerfile, "--chown=app:staff", "--chown=app", 1), ran: []string{"COPY --chown=app conf /conf", "COPY --exclude=*.tmp data/ /data/", "RUN cat /conf > /c"}},
		{name: "second copied file", change: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "data/d"), "changed") }, ran: after(3)},
		{name: "comment and blank lines", dockerfile: "# a comment\n\n" + strings.Replace(cacheDockerfile, "ENV E=1", "\nENV E=1", 1), ran: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := baseStore(t)
			cacheDir := t.TempDir()
			dir := contextDir(t, map[string]string{
				"app/main": "main", "app/debug.log": "log", ".dockerignore": "app/*.log\n",
				"conf": "c=1\n", "data/d": "d", "data/x.tmp": "tmp", "README": "readme",
			})
			must(t, os.Symlink("main", filepath.Join(dir, "app/link")))
			args := map[string]string{"V": "1"}
			first, ran, out := cachedBuild(t, s, cacheDir, dir, cacheDockerfile, func(r *Request) { r.BuildArgs = args })
			if len(ran) != 5 {
				t.Fatalf("first build ran %q:\n%s", ran, out)
			}
			if tc.change != nil {
				tc.change(t, dir)
			}
			df := cmpOr(tc.dockerfile, cacheDockerfile)
			if tc.args != nil {
				args = tc.args
			}
			second, ran, out := cachedBuild(t, s, cacheDir, dir, df, func(r *Request) { r.BuildArgs = args })
			if !slices.Equal(ran, tc.ran) {
				t.Errorf("ran %q, want %q\n%s", ran, tc.ran, out)
			}
			if tc.ran == nil && tc.dockerfile == "" && second.Manifest.Digest != first.Manifest.Digest {
				t.Errorf("a fully cached build gave %s, the first %s", second.Manifest.Digest, first.Manifest.Digest)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCacheNoCache: --no-cache runs every step and --no-cache-filter the
// stages it names; both still record what ran.
func TestCacheNoCache(t *testing.T) {
	s := baseStore(t)
	cacheDir := t.TempDir()
	dir := contextDir(t, map[string]string{"f": "x"})
	df := "FROM base:1 AS one\nCOPY f /f\nFROM base:1 AS two\nCOPY --from=one /f /g\nRUN cat /g > /h\n"
	cachedBuild(t, s, cacheDir, dir, df, nil)
	if _, ran, out := cachedBuild(t, s, cacheDir, dir, df, func(r *Request) { r.NoCache = true }); len(ran) != 3 {
		t.Errorf("--no-cache ran %q\n%s", ran, out)
	}
	_, ran, out := cachedBuild(t, s, cacheDir, dir, df, func(r *Request) { r.NoCacheFilter = []string{"two"} })
	if want := []string{"COPY --from=one /f /g", "RUN cat /g > /h"}; !slices.Equal(ran, want) {
		t.Errorf("--no-cache-filter two ran %q, want %q\n%s", ran, want, out)
	}
	if _, ran, out := cachedBuild(t, s, cacheDir, dir, df, nil); len(ran) != 0 {
		t.Errorf("after --no-cache, ran %q\n%s", ran, out)
	}
}

// TestCacheLazyRootfs: after a hit, a later miss runs on the filesystem
// the cached layers make (unpacked only then), and a COPY --from of a
// fully cached stage reads that stage's files.
func TestCacheLazyRootfs(t *testing.T) {
	s := baseStore(t)
	cacheDir := t.TempDir()
	dir := contextDir(t, map[string]string{"a": "1", "b": "1"})
	df := "FROM base:1 AS build\nCOPY a /a\nRUN cat /a > /built\nFROM base:1\nCOPY --from=build /built /built\nCOPY b /b\nRUN cat /built /b > /both\n"
	cachedBuild(t, s, cacheDir, dir, df, nil)
	mustWrite(t, filepath.Join(dir, "b"), "2")
	res, ran, out := cachedBuild(t, s, cacheDir, dir, df, nil)
	if want := []string{"COPY b /b", "RUN cat /built /b > /both"}; !slices.Equal(ran, want) {
		t.Errorf("ran %q, want %q\n%s", ran, want, out)
	}
	if f := imageFile(t, s, res, "both"); f.data != "12" {
		t.Errorf("/both = %q, want 12", f.data)
	}
	mustWrite(t, filepath.Join(dir, "a"), "3")
	res, ran, out = cachedBuild(t, s, cacheDir, dir, df, nil)
	if want := []string{"COPY a /a", "RUN cat /a > /built", "COPY --from=build /built /built", "COPY b /b", "RUN cat /built /b > /both"}; !slices.Equal(ran, want) {
		t.Errorf("ran %q, want %q\n%s", ran, want, out)
	}
	if f := imageFile(t, s, res, "both"); f.data != "32" {
		t.Errorf("/both = %q, want 32", f.data)
	}
}

// TestStatCache: a file is read again only when its metadata changed,
// and a change within the racy window is never trusted.
func TestStatCache(t *testing.T) {
	c, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	mustWrite(t, f, "one")
	old := time.Now().Add(-time.Minute)
	must(t, os.Chtimes(f, old, old))
	time.Sleep(2 * time.Duration(racyWindow)) // the ctime, which cannot be set, leaves the racy window
	digestOf := func(sc *statCache) string {
		var st unix.Stat_t
		must(t, unix.Lstat(f, &st))
		d, err := sc.digest(f, "f", &st)
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	sc := newStatCache(c, dir)
	first := digestOf(sc)
	if sc.hashed != 1 {
		t.Fatalf("hashed %d files", sc.hashed)
	}
	must(t, sc.save())
	sc = newStatCache(c, dir)
	if d := digestOf(sc); d != first || sc.hashed != 0 {
		t.Errorf("unchanged file: %s (hashed %d), want %s from the cache", d, sc.hashed, first)
	}
	mustWrite(t, f, "two")
	must(t, os.Chtimes(f, old, old)) // same size and mtime; ctime moved
	if d := digestOf(sc); d == first || sc.hashed != 1 {
		t.Errorf("changed file: %s (hashed %d)", d, sc.hashed)
	}
	// Just written: hashed every time until it is older than the window.
	mustWrite(t, f, "new")
	digestOf(sc)
	digestOf(sc)
	if sc.hashed != 3 {
		t.Errorf("a file changed within the racy window was trusted (hashed %d)", sc.hashed)
	}
}

// TestCacheLayerFormat: a build asking for another compression or
// another SOURCE_DATE_EPOCH does not take layers written otherwise.
func TestCacheLayerFormat(t *testing.T) {
	s := baseStore(t)
	cacheDir := t.TempDir()
	dir := contextDir(t, map[string]string{"f": "x"})
	df := "FROM base:1\nCOPY f /f\n"
	cachedBuild(t, s, cacheDir, dir, df, nil)
	epoch := time.Unix(1700000000, 0)
	for name, mod := range map[string]func(*Request){
		"gzip":  func(r *Request) { r.Compression = layer.Gzip },
		"epoch": func(r *Request) { r.SourceDateEpoch = &epoch },
	} {
		if _, ran, out := cachedBuild(t, s, cacheDir, dir, df, mod); len(ran) != 1 {
			t.Errorf("%s: ran %q\n%s", name, ran, out)
		}
		if _, ran, out := cachedBuild(t, s, cacheDir, dir, df, mod); len(ran) != 0 {
			t.Errorf("%s again: ran %q\n%s", name, ran, out)
		}
	}
}

// capturePusher keeps what a --cache-to exported.
type capturePusher struct {
	records []Record
	blobs   []ocispec.Descriptor
}

func (p *capturePusher) String() string { return "capture" }

func (p *capturePusher) Push(ctx context.Context, b store.Blobs, blobs []ocispec.Descriptor, d ocispec.Descriptor, raw []byte) error {
	m, err := parseCacheManifest(raw)
	if err != nil {
		return err
	}
	cfg, err := readBlob(ctx, b, m.Config)
	if err != nil {
		return err
	}
	if p.records, err = cacheRecords(m, cfg); err != nil {
		return err
	}
	p.blobs = blobs
	for _, bd := range blobs {
		if _, err := b.Stat(ctx, bd.Digest); err != nil {
			return err
		}
	}
	return nil
}

// TestCacheExportModes: mode=min exports the steps of the stages the
// image is made of, mode=max those of every stage built.
func TestCacheExportModes(t *testing.T) {
	dir := contextDir(t, map[string]string{"f": "f", "h": "h"})
	df := "FROM base:1 AS tools\nCOPY f /f\nFROM base:1 AS mid\nCOPY h /h\nFROM mid\nCOPY --from=tools /f /g\nENV A=1\n"
	for _, tc := range []struct {
		max  bool
		want []string
	}{
		{false, []string{"COPY h /h", "COPY --from=tools /f /g", "ENV A=1"}},
		{true, []string{"COPY f /f", "COPY h /h", "COPY --from=tools /f /g", "ENV A=1"}},
	} {
		p := &capturePusher{}
		cachedBuild(t, baseStore(t), t.TempDir(), dir, df, func(r *Request) { r.CacheTo = []CacheTarget{{Dest: p, Max: tc.max}} })
		var got []string
		for _, r := range p.records {
			got = append(got, r.CreatedBy)
		}
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("max=%v exported %q, want %q", tc.max, got, tc.want)
		}
		if len(p.blobs) != 1+len(tc.want)-1 { // the config, and a layer per COPY
			t.Errorf("max=%v pushed %d blobs", tc.max, len(p.blobs))
		}
	}
}

// TestCacheAfterUncacheableStep: an ADD of a URL without --checksum
// always runs (its content is known only once downloaded), and later
// steps chain on what it gave: the same download keeps them cached,
// layered onto the filesystem the ADD ran in.
func TestCacheAfterUncacheableStep(t *testing.T) {
	body := "downloaded\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }))
	defer srv.Close()
	s := baseStore(t)
	cacheDir := t.TempDir()
	dir := contextDir(t, map[string]string{"a": "a\n", "b": "b\n"})
	df := "FROM base:1\nADD " + srv.URL + "/file /file\nCOPY a /a\nCOPY b /b\nRUN cat /file /a /b > /all\n"
	cachedBuild(t, s, cacheDir, dir, df, nil)
	mustWrite(t, filepath.Join(dir, "b"), "B\n")
	res, ran, out := cachedBuild(t, s, cacheDir, dir, df, nil)
	if want := []string{"ADD " + srv.URL + "/file /file", "COPY b /b", "RUN cat /file /a /b > /all"}; !slices.Equal(ran, want) {
		t.Errorf("ran %q, want %q\n%s", ran, want, out)
	}
	if f := imageFile(t, s, res, "all"); f.data != "downloaded\na\nB\n" {
		t.Errorf("/all = %q", f.data)
	}
	body = "changed\n"
	if _, ran, out := cachedBuild(t, s, cacheDir, dir, df, nil); len(ran) != 4 {
		t.Errorf("after the download changed, ran %q\n%s", ran, out)
	}
}
