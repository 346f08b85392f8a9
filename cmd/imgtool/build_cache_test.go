package main_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// cacheRunsDockerfile runs two RUN steps that each append a line to the
// cache mount "runs", so that the file says which steps really ran.
const cacheRunsDockerfile = `FROM base:1
COPY a /a
RUN --mount=type=cache,id=runs,target=/runs cat /a >> /runs/log && cat /a > /from-a
COPY b /b
RUN --mount=type=cache,id=runs,target=/runs cat /b >> /runs/log && cat /b > /from-b
`

// runsLog is what the RUN steps of cacheRunsDockerfile appended so far.
func runsLog(t *testing.T, c *cli) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.root, "cache", "build", "c-runs", "log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(data)
}

// buildCounted builds dir as ref and returns the digest and the number
// of CACHED steps.
func buildCounted(t *testing.T, c *cli, dir, ref string, extra ...string) (string, int) {
	t.Helper()
	r := c.run(nil, append(append([]string{"build", "-t", ref}, extra...), dir)...)
	if r.code != 0 {
		t.Fatalf("build %s: exit %d\n%s", ref, r.code, r.stderr)
	}
	return strings.TrimSpace(r.stdout), strings.Count(r.stderr, " CACHED\n")
}

// TestBuildCache: a second build takes every step from the cache and
// gives the same image; changing one file reruns the steps from the COPY
// that copies it; --no-cache reruns everything; prune keeps the cache's
// layers while prune --cache empties it.
func TestBuildCache(t *testing.T) {
	c := newCLI(t)
	busyboxBase(t, c)
	dir := writeContext(t, t.TempDir(), map[string]string{"Dockerfile": cacheRunsDockerfile, "a": "a\n", "b": "b\n", "unused": "x"})
	// Files changed within a moment of being hashed are hashed again
	// (their timestamps could hide a change): let that moment pass.
	time.Sleep(200 * time.Millisecond)

	first, cached := buildCounted(t, c, dir, "app:1")
	if cached != 0 || runsLog(t, c) != "a\nb\n" {
		t.Fatalf("first build: %d cached, runs %q", cached, runsLog(t, c))
	}
	r := c.run(nil, "build", "-t", "app:1", dir)
	again, cached := strings.TrimSpace(r.stdout), strings.Count(r.stderr, " CACHED\n")
	if cached != 4 || again != first || runsLog(t, c) != "a\nb\n" {
		t.Errorf("no-change rebuild: %d cached (want 4), digest %s (first %s), runs %q", cached, again, first, runsLog(t, c))
	}
	// It reads no file of the context: their metadata says they did not change.
	if n := strings.Count(r.stderr, "context: 1 files checked, 0 read (0B)"); n != 2 {
		t.Errorf("no-change rebuild read files:\n%s", r.stderr)
	}
	// A file no step copies changes nothing.
	writeContext(t, dir, map[string]string{"unused": "y"})
	if _, cached := buildCounted(t, c, dir, "app:1"); cached != 4 {
		t.Errorf("after changing an uncopied file: %d cached", cached)
	}

	writeContext(t, dir, map[string]string{"b": "B\n"})
	changed, cached := buildCounted(t, c, dir, "app:2")
	if cached != 2 || runsLog(t, c) != "a\nb\nB\n" || changed == first {
		t.Errorf("one file changed: %d cached (want 2), runs %q", cached, runsLog(t, c))
	}
	if h := exportFiles(t, c, "app:2")["from-b"]; h == nil || h.Linkname != "B\n" {
		t.Errorf("/from-b after the change: %+v", h)
	}

	if _, cached := buildCounted(t, c, dir, "app:3", "--no-cache"); cached != 0 || runsLog(t, c) != "a\nb\nB\na\nB\n" {
		t.Errorf("--no-cache: %d cached, runs %q", cached, runsLog(t, c))
	}

	// The store's prune keeps the layers the cache names, images or not.
	for _, ref := range []string{"app:1", "app:2", "app:3"} {
		c.ok("rmi", ref)
	}
	c.ok("prune")
	if _, cached := buildCounted(t, c, dir, "app:4"); cached != 4 {
		t.Errorf("after rmi and prune: %d cached, want 4", cached)
	}
	if out := c.ok("images"); !strings.Contains(out, "app") {
		t.Errorf("images: %s", out)
	}

	// prune --keep-storage without --cache is a usage error.
	c.fail(2, "prune", "--keep-storage", "1GB")
	out := c.ok("prune", "--cache")
	if !strings.Contains(out, "Build cache: removed") || strings.Contains(out, "removed 0 steps") {
		t.Errorf("prune --cache: %s", out)
	}
	if runsLog(t, c) != "" {
		t.Errorf("prune --cache left the cache mount: %q", runsLog(t, c))
	}
	if _, cached := buildCounted(t, c, dir, "app:5"); cached != 0 || runsLog(t, c) != "a\nB\n" {
		t.Errorf("after prune --cache: %d cached, runs %q", cached, runsLog(t, c))
	}
}

// TestBuildCacheKeepStorage: --keep-storage keeps the most recently used
// steps whose layers fit, and the evicted layers go from the store.
func TestBuildCacheKeepStorage(t *testing.T) {
	c := newCLI(t)
	busyboxBase(t, c)
	// 100 KiB that zstd cannot shrink: each layer is about that.
	noise := make([]byte, 100<<10)
	rand.Read(noise)
	big := string(noise)
	dir := writeContext(t, t.TempDir(), map[string]string{"Dockerfile": "FROM base:1\nCOPY a /a\n", "a": big + "1"})
	buildCounted(t, c, dir, "old:1")
	c.ok("rmi", "old:1")
	writeContext(t, dir, map[string]string{"a": big + "2"})
	buildCounted(t, c, dir, "new:1")
	out := c.ok("prune", "--cache", "--keep-storage", "150KB")
	if !strings.Contains(out, "removed 1 steps") || !strings.Contains(out, "deleted 1 blobs") {
		t.Errorf("prune --cache --keep-storage 150KB: %s", out)
	}
	// The newest step stays cached; the old one runs again.
	if _, cached := buildCounted(t, c, dir, "new:1"); cached != 1 {
		t.Errorf("newest step after prune: %d cached", cached)
	}
	writeContext(t, dir, map[string]string{"a": big + "1"})
	if _, cached := buildCounted(t, c, dir, "old:1"); cached != 0 {
		t.Errorf("evicted step: %d cached", cached)
	}
	if _, cached := buildCounted(t, c, dir, "old:1", "--no-cache-filter", "0"); cached != 0 {
		t.Errorf("--no-cache-filter 0: %d cached", cached)
	}

	// The bound applies after every build that ran a step: the least
	// recently used steps go, and their layers once no image holds them.
	c.ok("rmi", "old:1")
	writeContext(t, dir, map[string]string{"a": big + "3"})
	buildCounted(t, c, dir, "new:1", "--cache-keep-storage", "150KB")
	writeContext(t, dir, map[string]string{"a": big + "1"})
	if _, cached := buildCounted(t, c, dir, "other:1"); cached != 0 {
		t.Errorf("a step past --cache-keep-storage stayed: %d cached", cached)
	}
	writeContext(t, dir, map[string]string{"a": big + "3"})
	if _, cached := buildCounted(t, c, dir, "new:1"); cached != 1 {
		t.Errorf("the newest step went: %d cached", cached)
	}
}

// TestBuildCacheConcurrent: builds sharing one data root and one cache
// run at once; each lands, and a build after them is fully cached.
func TestBuildCacheConcurrent(t *testing.T) {
	c := newCLI(t)
	busyboxBase(t, c)
	dir := writeContext(t, t.TempDir(), map[string]string{
		"Dockerfile": "FROM base:1\nCOPY a /a\nRUN cat /a > /b\nCOPY a /c\n", "a": "a\n",
	})
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.run(nil, "build", "-t", "par:"+string(rune('0'+i)), dir)
			if r.code != 0 {
				errs <- r.stderr
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent build: %s", e)
	}
	if _, cached := buildCounted(t, c, dir, "par:after"); cached != 3 {
		t.Errorf("build after the concurrent ones: %d cached, want 3", cached)
	}
	if h := exportFiles(t, c, "par:after")["b"]; h == nil || h.Linkname != "a\n" {
		t.Errorf("/b: %+v", h)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.root, "tmp")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// TestBuildCacheRegistry: one data root exports its cache to `imgtool
// registry serve`; another, empty, builds from it without running a
// step (the RUN steps' cache mount stays empty) and gets the same image.
// A build that fails exports the steps before the failure.
func TestBuildCacheRegistry(t *testing.T) {
	reg := newRegistry(t, nil)
	a := newCLI(t)
	busyboxBase(t, a)
	a.ok("push", "base:1", reg+"/lib/base:1")
	df := strings.ReplaceAll(cacheRunsDockerfile, "FROM base:1", "FROM "+reg+"/lib/base:1")
	dir := writeContext(t, t.TempDir(), map[string]string{"Dockerfile": df, "a": "a\n", "b": "b\n"})
	cacheRef := reg + "/cache/app:buildcache"
	want, _ := buildCounted(t, a, dir, "app:1", "--cache-to", "type=registry,ref="+cacheRef+",mode=max")

	b := newCLI(t)
	got, cached := buildCounted(t, b, dir, "app:1", "--cache-from", "type=registry,ref="+cacheRef)
	if cached != 4 || got != want {
		t.Errorf("from the registry's cache: %d cached (want 4), digest %s (want %s)", cached, got, want)
	}
	if log := runsLog(t, b); log != "" {
		t.Errorf("RUN steps ran on the second data root: %q", log)
	}
	if h := exportFiles(t, b, "app:1")["from-b"]; h == nil || h.Linkname != "b\n" {
		t.Errorf("/from-b: %+v", h)
	}

	// A miss after hits fetches the cached layers it runs on.
	writeContext(t, dir, map[string]string{"b": "B\n"})
	c := newCLI(t)
	if _, cached := buildCounted(t, c, dir, "app:2", "--cache-from", cacheRef); cached != 2 || runsLog(t, c) != "B\n" {
		t.Errorf("one file changed: %d cached (want 2), runs %q", cached, runsLog(t, c))
	}
	if h := exportFiles(t, c, "app:2")["from-a"]; h == nil || h.Linkname != "a\n" {
		t.Errorf("/from-a from a cached layer: %+v", h)
	}

	// A failing build exports what it cached until the failure.
	failing := writeContext(t, t.TempDir(), map[string]string{
		"Dockerfile": "FROM " + reg + "/lib/base:1\nCOPY a /a\nRUN --mount=type=cache,id=runs,target=/runs echo ran >> /runs/log\nRUN exit 3\n",
		"a":          "x\n",
	})
	partial := reg + "/cache/failing:1"
	if r := a.run(nil, "build", "--cache-to", "type=registry,ref="+partial, failing); r.code != 1 || !strings.Contains(r.stderr, "exit code: 3") {
		t.Fatalf("failing build: exit %d\n%s", r.code, r.stderr)
	}
	d := newCLI(t)
	r := d.run(nil, "build", "--cache-from", partial, failing)
	if r.code != 1 || strings.Count(r.stderr, " CACHED\n") != 2 || runsLog(t, d) != "" {
		t.Errorf("from a failed build's cache: exit %d, runs %q\n%s", r.code, runsLog(t, d), r.stderr)
	}

	// A reference that holds no cache yet is a warning, as in buildx.
	e := newCLI(t)
	r = e.run(nil, "build", "--cache-from", reg+"/cache/none:1", dir)
	if r.code != 0 || !strings.Contains(r.stderr, "cannot import the build cache") {
		t.Errorf("missing cache: exit %d\n%s", r.code, r.stderr)
	}
	// An export that fails fails the build, unless ignore-error=true.
	dead := "127.0.0.1:1/cache/app:1"
	if line := e.fail(1, "build", "--cache-to", dead, dir); !strings.Contains(line, "export build cache to "+dead) {
		t.Errorf("export to a dead registry: %s", line)
	}
	r = e.run(nil, "build", "--cache-to", "type=registry,ref="+dead+",ignore-error=true", dir)
	if r.code != 0 || !strings.Contains(r.stderr, "cannot export the build cache") {
		t.Errorf("ignore-error=true: exit %d\n%s", r.code, r.stderr)
	}
	e.fail(2, "build", "--cache-to", "type=local,dest=x", dir)
	e.fail(2, "build", "--cache-to", "type=registry,ref="+cacheRef+",mode=all", dir)
}

// TestBuildCacheUnprivileged: the cache works for an unprivileged user
// (CI runs as root and drops to uid 65534): the rebuild is fully cached
// with the same digest, a change reruns from its COPY, prune --cache
// empties it.
func TestBuildCacheUnprivileged(t *testing.T) {
	c := newCLI(t)
	busyboxBase(t, c)
	base := t.TempDir()
	dir := writeContext(t, filepath.Join(base, "ctx"), map[string]string{"Dockerfile": cacheRunsDockerfile, "a": "a\n", "b": "b\n"})
	if os.Getuid() == 0 {
		for _, p := range []string{base, filepath.Dir(base), filepath.Dir(binary)} {
			if err := os.Chmod(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		chownTree(t, base, nobody)
		chownTree(t, c.root, nobody)
		c.uid = nobody
	}
	first, cached := buildCounted(t, c, dir, "app:1")
	if cached != 0 || runsLog(t, c) != "a\nb\n" {
		t.Fatalf("first build as uid %d: %d cached, runs %q", nobody, cached, runsLog(t, c))
	}
	if again, cached := buildCounted(t, c, dir, "app:1"); cached != 4 || again != first {
		t.Errorf("rebuild as uid %d: %d cached, %s (first %s)", nobody, cached, again, first)
	}
	writeContext(t, dir, map[string]string{"b": "B\n"})
	if _, cached := buildCounted(t, c, dir, "app:2"); cached != 2 || runsLog(t, c) != "a\nb\nB\n" {
		t.Errorf("one file changed as uid %d: %d cached, runs %q", nobody, cached, runsLog(t, c))
	}
	if out := c.ok("prune", "--cache"); !strings.Contains(out, "removed 6 steps") {
		t.Errorf("prune --cache as uid %d: %s", nobody, out)
	}
	if _, cached := buildCounted(t, c, dir, "app:3"); cached != 0 {
		t.Errorf("after prune --cache as uid %d: %d cached", nobody, cached)
	}
}
