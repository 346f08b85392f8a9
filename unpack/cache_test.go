package unpack_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/unpack"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sys/unix"
)

func rootfs(t *testing.T, c *unpack.Cache, b *memBlobs, layers ...manifest.LayerDesc) *unpack.Lease {
	t.Helper()
	l, err := c.Rootfs(context.Background(), b, layers)
	if err != nil {
		t.Fatalf("Rootfs: %v", err)
	}
	t.Cleanup(func() { l.Release() })
	return l
}

func openCache(t *testing.T, dir string, o unpack.Options) *unpack.Cache {
	t.Helper()
	c, err := unpack.OpenCache(context.Background(), dir, o)
	if err != nil {
		t.Fatalf("OpenCache: %v", err)
	}
	return c
}

func wantContent(t *testing.T, dir, name, body string) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || string(got) != body {
		t.Errorf("%s: %q, %v; want %q", name, got, err, body)
	}
}

// TestCacheSharesChains: two images over one base apply the base once,
// and asking again applies nothing.
func TestCacheSharesChains(t *testing.T) {
	b := newBlobs()
	base := b.layer(t, func(b *tarB) { b.dir("etc/").file("etc/os-release", "base").file("shared", "base") })
	la := b.layer(t, func(b *tarB) { b.file("a", "image a").file("shared", "from a") })
	lb := b.layer(t, func(b *tarB) { b.file("b", "image b").whiteout("", "shared") })
	c := openCache(t, cacheDir(t), unpack.Options{})

	imgA := rootfs(t, c, b, base, la)
	imgB := rootfs(t, c, b, base, lb)
	if n := b.openCount(base.Digest); n != 1 {
		t.Errorf("base layer applied %d times, want once", n)
	}
	if want := identity.ChainID([]digest.Digest{base.DiffID, la.DiffID}); imgA.ChainID != want {
		t.Errorf("chain ID %s, want %s", imgA.ChainID, want)
	}
	wantContent(t, imgA.Dir, "shared", "from a")
	wantContent(t, imgA.Dir, "etc/os-release", "base")
	wantContent(t, imgB.Dir, "b", "image b")
	if _, err := os.Lstat(filepath.Join(imgB.Dir, "shared")); !os.IsNotExist(err) {
		t.Errorf("whiteout in image b: shared still there (%v)", err)
	}
	if _, err := os.Lstat(filepath.Join(imgB.Dir, "a")); !os.IsNotExist(err) {
		t.Errorf("image a's file leaked into image b (%v)", err)
	}

	again := rootfs(t, c, b, base, la)
	if again.Dir != imgA.Dir || again.Applied.Entries != 0 {
		t.Errorf("second Rootfs: dir %s (first %s), applied %d entries, want a hit", again.Dir, imgA.Dir, again.Applied.Entries)
	}
	baseOnly := rootfs(t, c, b, base)
	if baseOnly.Applied.Entries != 0 || b.openCount(base.Digest) != 1 || b.openCount(la.Digest) != 1 || b.openCount(lb.Digest) != 1 {
		t.Errorf("layers opened %d %d %d times, want once each", b.openCount(base.Digest), b.openCount(la.Digest), b.openCount(lb.Digest))
	}
	wantContent(t, baseOnly.Dir, "shared", "base")
}

// TestCacheEmptyImage: an image without layers gets an empty directory.
func TestCacheEmptyImage(t *testing.T) {
	c := openCache(t, cacheDir(t), unpack.Options{})
	l := rootfs(t, c, newBlobs())
	ents, err := os.ReadDir(l.Dir)
	if err != nil || len(ents) != 0 {
		t.Errorf("empty image's rootfs %s: %v, %v", l.Dir, ents, err)
	}
}

// TestCacheModesApart: rootless and privileged entries are different trees.
func TestCacheModesApart(t *testing.T) {
	b := newBlobs()
	l := b.layer(t, func(b *tarB) {
		b.add(&tar.Header{Name: "owned", Typeflag: tar.TypeReg, Uid: 1000, Gid: 1000}, []byte("x"))
	})
	dir := cacheDir(t)
	rootless := rootfs(t, openCache(t, dir, unpack.Options{Rootless: true}), b, l)
	privileged := rootfs(t, openCache(t, dir, unpack.Options{}), b, l)
	if os.Geteuid() == 0 && rootless.Dir == privileged.Dir {
		t.Errorf("both modes share %s", rootless.Dir)
	}
	if os.Geteuid() == 0 && b.openCount(l.Digest) != 2 {
		t.Errorf("layer applied %d times for two modes, want 2", b.openCount(l.Digest))
	}
	if xattrs(filepath.Join(rootless.Dir, "owned")) == "" {
		t.Errorf("rootless entry records no owner")
	}
}

// TestCacheBadLayer: a layer that fails verification publishes nothing and
// leaves no staging directory.
func TestCacheBadLayer(t *testing.T) {
	b := newBlobs()
	good := b.layer(t, func(b *tarB) { b.file("f", "good") })
	bad := b.layer(t, func(b *tarB) { b.file("g", "bad") })
	bad.DiffID = digest.FromString("another tar")
	dir := cacheDir(t)
	c := openCache(t, dir, unpack.Options{})
	if l, err := c.Rootfs(context.Background(), b, []manifest.LayerDesc{good, bad}); err == nil {
		l.Release()
		t.Fatal("Rootfs of a layer with a wrong diffID succeeded")
	}
	chains := filepath.Join(dir, "*", "chains", "*")
	if got, _ := filepath.Glob(chains); len(got) != 1 {
		t.Errorf("chains after the failure: %v, want only the good layer's", got)
	}
	if got, _ := filepath.Glob(filepath.Join(dir, "*", "staging", "*")); len(got) != 0 {
		t.Errorf("staging left behind: %v", got)
	}
}

// TestCacheConcurrent: goroutines with their own Cache (their own lock
// descriptors, as processes have) ask for one image at once; each layer
// is applied once and all get the same tree.
func TestCacheConcurrent(t *testing.T) {
	b := newBlobs()
	var layers []manifest.LayerDesc
	for i := range 3 {
		layers = append(layers, b.layer(t, func(b *tarB) {
			for j := range 200 {
				b.file(filepath.Join("d", string(rune('a'+i)), string(rune('a'+j%26))+string(rune('0'+j/26))), "x")
			}
		}))
	}
	dirs := raceRootfs(t, 4, cacheDir(t), b, layers)
	for _, l := range layers {
		if got := b.openCount(l.Digest); got != 1 {
			t.Errorf("layer %s applied %d times, want once", l.Digest, got)
		}
	}
	for i := range dirs {
		if dirs[i] != dirs[0] {
			t.Errorf("Rootfs %d got %s, Rootfs 0 got %s", i, dirs[i], dirs[0])
		}
	}
}

// raceRootfs has n Caches on dir, each with its own lock descriptors as
// processes have, ask for layers at once, and returns the trees they got.
func raceRootfs(t *testing.T, n int, dir string, b *memBlobs, layers []manifest.LayerDesc, opts ...unpack.CacheOption) []string {
	dirs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := unpack.OpenCache(context.Background(), dir, unpack.Options{}, opts...)
			if err != nil {
				t.Error(err)
				return
			}
			l, err := c.Rootfs(context.Background(), b, layers)
			if err != nil {
				t.Error(err)
				return
			}
			dirs[i] = l.Dir
			l.Release()
		})
	}
	wg.Wait()
	return dirs
}

// TestCacheLeaseVsPrune: Prune spares a leased chain (and the parents of
// nothing it keeps), and frees it once released.
func TestCacheLeaseVsPrune(t *testing.T) {
	b := newBlobs()
	base := b.layer(t, func(b *tarB) { b.file("big", string(make([]byte, 1<<20))) })
	top := b.layer(t, func(b *tarB) { b.file("small", "x") })
	c := openCache(t, cacheDir(t), unpack.Options{})
	l, err := c.Rootfs(context.Background(), b, []manifest.LayerDesc{base, top})
	must(t, err)
	none := func(digest.Digest) bool { return false }
	freed, err := c.Prune(context.Background(), none)
	must(t, err)
	if _, err := os.Stat(filepath.Join(l.Dir, "small")); err != nil {
		t.Fatalf("Prune removed a leased chain: %v", err)
	}
	// The base chain was not leased: it goes, but its file lives on as the
	// top chain's hard link, so nearly nothing is freed.
	if freed >= 1<<20 {
		t.Errorf("Prune freed %d bytes while the leased chain shares the big file", freed)
	}
	must(t, l.Release())
	must(t, l.Release()) // idempotent
	freed, err = c.Prune(context.Background(), none)
	must(t, err)
	if _, err := os.Stat(l.Dir); !os.IsNotExist(err) {
		t.Errorf("released chain survived Prune: %v", err)
	}
	if freed < 1<<20 {
		t.Errorf("Prune freed %d bytes, want at least the 1 MiB file", freed)
	}
	// keep is honoured, and a pruned chain is built again on demand.
	l2 := rootfs(t, c, b, base, top)
	l2.Release()
	_, err = c.Prune(context.Background(), func(d digest.Digest) bool { return d == l2.ChainID })
	must(t, err)
	wantContent(t, l2.Dir, "small", "x")
}

// TestCacheKilledBuild: a process killed while building leaves a staging
// directory that OpenCache leaves alone while the builder lives and
// removes once it is gone.
func TestCacheKilledBuild(t *testing.T) {
	const helperEnv = "IMGTOOL_CACHE_KILL_HELPER"
	b := newBlobs()
	l := b.layer(t, func(b *tarB) {
		for i := range 64 {
			b.file(filepath.Join("f", string(rune('a'+i%26))+string(rune('a'+i/26))), string(make([]byte, 64<<10)))
		}
	})
	if dir := os.Getenv(helperEnv); dir != "" {
		b.block = l.Digest
		c := openCache(t, dir, unpack.Options{})
		c.Rootfs(context.Background(), b, []manifest.LayerDesc{l})
		t.Fatal("the blocked build returned")
	}
	dir := cacheDir(t)
	openCache(t, dir, unpack.Options{}) // made by us, as the helper's parent dirs are
	cmd := newHelper(t, "^TestCacheKilledBuild$", helperEnv+"="+dir)
	must(t, cmd.Start())
	defer cmd.Process.Kill()
	staging := filepath.Join(dir, "*", "staging", "*")
	var found []string
	for deadline := time.Now().Add(20 * time.Second); len(found) == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		found, _ = filepath.Glob(staging)
	}
	if len(found) == 0 {
		t.Fatal("the helper never started building")
	}
	openCache(t, dir, unpack.Options{})
	if got, _ := filepath.Glob(staging); len(got) != 1 {
		t.Errorf("OpenCache removed a live build's staging dir: %v", got)
	}
	must(t, cmd.Process.Kill())
	cmd.Wait()
	c := openCache(t, dir, unpack.Options{})
	if got, _ := filepath.Glob(staging); len(got) != 0 {
		t.Errorf("OpenCache left a killed build's staging dir: %v", got)
	}
	lease := rootfs(t, c, b, l)
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(lease.Dir, "f", "aa"), &st))
}

// TestCacheConcurrentProcesses: processes asking for one image at once
// apply each layer once between them (the others wait on the chain's lock
// and find it done) and all lease the same tree.
func TestCacheConcurrentProcesses(t *testing.T) {
	const helperEnv = "IMGTOOL_CACHE_CONCURRENT_HELPER"
	b := newBlobs()
	var layers []manifest.LayerDesc
	entries := 0
	for i := range 3 {
		layers = append(layers, b.layer(t, func(b *tarB) {
			for j := range 300 {
				b.file(fmt.Sprintf("l%d/f%03d", i, j), strings.Repeat("x", j))
				entries++
			}
		}))
	}
	if dir := os.Getenv(helperEnv); dir != "" {
		l := rootfs(t, openCache(t, dir, unpack.Options{}), b, layers...)
		fmt.Printf("APPLIED %d %s\n", l.Applied.Entries, l.Dir)
		return
	}
	dir := cacheDir(t)
	openCache(t, dir, unpack.Options{})
	const n = 3
	applied, dirs := 0, map[string]bool{}
	for _, r := range raceProcesses(t, n, "^TestCacheConcurrentProcesses$", helperEnv+"="+dir) {
		applied += r.applied
		dirs[r.leased] = true
	}
	if applied != entries {
		t.Errorf("%d processes applied %d entries between them, want each layer's %d once", n, applied, entries)
	}
	if len(dirs) != 1 {
		t.Errorf("the processes leased different trees: %v", dirs)
	}
}

// raced is what one helper process of raceProcesses reported.
type raced struct {
	applied int    // entries it applied
	leased  string // the tree it leased
}

// raceProcesses starts n processes of this test binary running test
// with env, at once, and returns what each printed on its "APPLIED
// <entries> <tree>" line; a helper that fails or prints none fails t.
func raceProcesses(t *testing.T, n int, test string, env ...string) []raced {
	t.Helper()
	outs := make([]bytes.Buffer, n)
	cmds := make([]*exec.Cmd, n)
	for i := range n {
		cmds[i] = newHelper(t, test, env...)
		cmds[i].Stdout = &outs[i]
		must(t, cmds[i].Start())
	}
	got := make([]raced, n)
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i].String())
		}
		for _, line := range strings.Split(outs[i].String(), "\n") {
			if _, err := fmt.Sscanf(line, "APPLIED %d %s", &got[i].applied, &got[i].leased); err == nil {
				break
			}
		}
		if got[i].leased == "" {
			t.Fatalf("helper %d printed no lease:\n%s", i, outs[i].String())
		}
	}
	return got
}

// TestCacheLimits: Options.Limits bound each layer a Rootfs applies.
func TestCacheLimits(t *testing.T) {
	b := newBlobs()
	small := b.layer(t, func(b *tarB) { b.file("a", "x").file("b", "x") })
	big := b.layer(t, func(b *tarB) {
		for i := range 8 {
			b.file(fmt.Sprintf("f%d", i), "x")
		}
	})
	c := openCache(t, cacheDir(t), unpack.Options{Limits: unpack.Limits{MaxEntries: 4}})
	rootfs(t, c, b, small, small) // 2 entries a layer: within the bound
	_, err := c.Rootfs(context.Background(), b, []manifest.LayerDesc{small, big})
	if !errors.Is(err, unpack.ErrLimit) {
		t.Errorf("Rootfs of a layer past MaxEntries: %v, want ErrLimit", err)
	}
}
