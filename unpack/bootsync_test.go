package unpack_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/unpack"
	"github.com/opencontainers/go-digest"
)

// The boot a Cache believes it runs in: a chain published during boot "A"
// and asked for during boot "B" is what a reboot after a crash leaves.
func boot(id string) unpack.CacheOption {
	return unpack.WithBootID(func() (string, error) { return id, nil })
}

func clock(at time.Time) unpack.CacheOption {
	return unpack.WithClock(func() time.Time { return at })
}

func openBoot(t *testing.T, dir string, opts ...unpack.CacheOption) *unpack.Cache {
	t.Helper()
	c, err := unpack.OpenCache(context.Background(), dir, unpack.Options{}, opts...)
	if err != nil {
		t.Fatalf("OpenCache: %v", err)
	}
	return c
}

// rootfsOnce is rootfs released at once.
func rootfsOnce(t *testing.T, c *unpack.Cache, b *memBlobs, layers ...manifest.LayerDesc) *unpack.Lease {
	t.Helper()
	l := rootfs(t, c, b, layers...)
	must(t, l.Release())
	return l
}

// markers maps the chains marked unsynced in the cache under dir to what
// their markers say.
func markers(t *testing.T, dir string) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*", "unsynced", "*"))
	must(t, err)
	m := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		must(t, err)
		m[filepath.Base(p)] = string(b)
	}
	return m
}

// lose empties a file of a cached chain, as a crash does to a file whose
// data was never written back: its name and inode are there, its data
// is not.
func lose(t *testing.T, path string) {
	t.Helper()
	must(t, os.Chmod(path, 0o644))
	must(t, os.Truncate(path, 0))
}

// TestCacheBootRebuild: a chain published during this boot and not
// synced is used as it is during this boot, and rebuilt after a reboot,
// when it may have lost data.
func TestCacheBootRebuild(t *testing.T) {
	b := newBlobs()
	base := b.layer(t, func(b *tarB) { b.dir("etc/").file("etc/os-release", "base") })
	top := b.layer(t, func(b *tarB) { b.dir("bin/").file("bin/app", "the app's bytes") })
	dir := cacheDir(t)
	first := rootfsOnce(t, openBoot(t, dir, boot("A")), b, base, top)
	got := markers(t, dir)
	if len(got) != 2 || got[first.ChainID.Encoded()] != "A\n" {
		t.Fatalf("markers after publishing two chains during boot A: %q", got)
	}
	lose(t, filepath.Join(first.Dir, "bin/app"))

	// Same boot: the page cache is the truth, nothing is rebuilt (which
	// the lost data shows).
	same := rootfsOnce(t, openBoot(t, dir, boot("A")), b, base, top)
	if same.Dir != first.Dir || same.Applied.Entries != 0 || b.openCount(top.Digest) != 1 {
		t.Errorf("during the same boot: applied %d entries, top opened %d times, want a hit", same.Applied.Entries, b.openCount(top.Digest))
	}
	wantContent(t, same.Dir, "bin/app", "")

	// Another boot: both chains are built again, and are B's.
	after := rootfsOnce(t, openBoot(t, dir, boot("B")), b, base, top)
	wantContent(t, after.Dir, "bin/app", "the app's bytes")
	wantContent(t, after.Dir, "etc/os-release", "base")
	if b.openCount(base.Digest) != 2 || b.openCount(top.Digest) != 2 {
		t.Errorf("after a reboot: layers opened %d and %d times, want each twice", b.openCount(base.Digest), b.openCount(top.Digest))
	}
	for chain, m := range markers(t, dir) {
		if m != "B\n" {
			t.Errorf("chain %s rebuilt during boot B is marked %q", chain, m)
		}
	}
	again := rootfsOnce(t, openBoot(t, dir, boot("B")), b, base, top)
	if again.Applied.Entries != 0 || b.openCount(top.Digest) != 2 {
		t.Errorf("the rebuilt chain was not reused during its boot: applied %d entries", again.Applied.Entries)
	}
}

// TestCacheBootUnmarked: a chain without a marker (made by older
// versions, or synced before publishing) is trusted during any boot; one
// whose marker a crash emptied, or that a Cache without a boot ID meets,
// is not.
func TestCacheBootUnmarked(t *testing.T) {
	b := newBlobs()
	base := b.layer(t, func(b *tarB) { b.file("base", "base") })
	top := b.layer(t, func(b *tarB) { b.file("top", "top") })
	dir := cacheDir(t)
	noProc := unpack.WithBootID(func() (string, error) { return "", errors.New("no /proc") })
	first := rootfsOnce(t, openBoot(t, dir, noProc), b, base, top)
	if got := markers(t, dir); len(got) != 0 {
		t.Fatalf("without a boot ID chains were marked: %q", got)
	}
	lose(t, filepath.Join(first.Dir, "top"))
	reused := rootfsOnce(t, openBoot(t, dir, boot("B")), b, base, top)
	wantContent(t, reused.Dir, "top", "")
	if b.openCount(top.Digest) != 1 {
		t.Errorf("an unmarked chain was rebuilt: top opened %d times", b.openCount(top.Digest))
	}

	// The top chain's marker, empty as a crash leaves a file whose data
	// was not written: rebuilt over the trusted base, even during "B".
	marker := filepath.Join(filepath.Dir(filepath.Dir(first.Dir)), "unsynced", first.ChainID.Encoded())
	must(t, os.WriteFile(marker, nil, 0o644))
	rebuilt := rootfsOnce(t, openBoot(t, dir, boot("B")), b, base, top)
	wantContent(t, rebuilt.Dir, "top", "top")
	if b.openCount(base.Digest) != 1 || b.openCount(top.Digest) != 2 {
		t.Errorf("layers opened %d and %d times, want the top one only again", b.openCount(base.Digest), b.openCount(top.Digest))
	}

	// Marked by "B", met without a boot ID: rebuilt, synced, unmarked.
	lose(t, filepath.Join(rebuilt.Dir, "top"))
	blind := rootfsOnce(t, openBoot(t, dir, noProc), b, base, top)
	wantContent(t, blind.Dir, "top", "top")
	if got := markers(t, dir); len(got) != 0 || b.openCount(top.Digest) != 3 {
		t.Errorf("without a boot ID: markers %q, top opened %d times; want it rebuilt unmarked", got, b.openCount(top.Digest))
	}
	must(t, os.WriteFile(marker, nil, 0o644))
	lose(t, filepath.Join(blind.Dir, "top"))
	blind = rootfsOnce(t, openBoot(t, dir, noProc), b, base, top)
	wantContent(t, blind.Dir, "top", "top")
}

// TestCacheBootIDFallback: what no boot ID can be makes the cache sync
// before publishing, as without /proc: no markers.
func TestCacheBootIDFallback(t *testing.T) {
	b := newBlobs()
	l := b.layer(t, func(b *tarB) { b.file("f", "x") })
	for name, read := range map[string]func() (string, error){
		"error":    func() (string, error) { return "", os.ErrNotExist },
		"empty":    func() (string, error) { return "", nil },
		"space":    func() (string, error) { return "a b", nil },
		"newline":  func() (string, error) { return "a\nb", nil },
		"too long": func() (string, error) { return strings.Repeat("x", 200), nil },
	} {
		t.Run(name, func(t *testing.T) {
			dir := cacheDir(t)
			rootfsOnce(t, openBoot(t, dir, unpack.WithBootID(read)), b, l)
			if got := markers(t, dir); len(got) != 0 {
				t.Errorf("markers %q, want none", got)
			}
		})
	}
	dir := cacheDir(t)
	rootfsOnce(t, openBoot(t, dir), b, l) // the kernel's
	if _, err := os.Stat("/proc/sys/kernel/random/boot_id"); err == nil && len(markers(t, dir)) != 1 {
		t.Errorf("with the kernel's boot ID: markers %q, want one", markers(t, dir))
	}
}

// TestCacheBootPromote: a use 30 s after publishing syncs the chain and
// removes its marker; it is then trusted after a reboot.
func TestCacheBootPromote(t *testing.T) {
	b := newBlobs()
	l := b.layer(t, func(b *tarB) { b.file("f", "data") })
	dir := cacheDir(t)
	now := time.Now()
	first := rootfsOnce(t, openBoot(t, dir, boot("A"), clock(now)), b, l)
	rootfsOnce(t, openBoot(t, dir, boot("A"), clock(now.Add(10*time.Second))), b, l)
	if got := markers(t, dir); len(got) != 1 {
		t.Fatalf("a use 10 s after publishing: markers %q, want the chain still marked", got)
	}
	rootfsOnce(t, openBoot(t, dir, boot("A"), clock(now.Add(31*time.Second))), b, l)
	if got := markers(t, dir); len(got) != 0 {
		t.Fatalf("a use 31 s after publishing: markers %q, want none", got)
	}
	lose(t, filepath.Join(first.Dir, "f"))
	after := rootfsOnce(t, openBoot(t, dir, boot("B")), b, l)
	wantContent(t, after.Dir, "f", "")
	if b.openCount(l.Digest) != 1 {
		t.Errorf("a synced chain was rebuilt after a reboot: opened %d times", b.openCount(l.Digest))
	}
}

// TestCacheBootPrune: Prune syncs and unmarks this boot's chains, removes
// those of another boot that no lease holds (even of images kept), and
// markers whose chain is gone.
func TestCacheBootPrune(t *testing.T) {
	b := newBlobs()
	base := b.layer(t, func(b *tarB) { b.file("base", "base") })
	la := b.layer(t, func(b *tarB) { b.file("a", "a") })
	lb := b.layer(t, func(b *tarB) { b.file("b", "b") })
	dir := cacheDir(t)
	all := func(digest.Digest) bool { return true }
	ctx := context.Background()

	a := rootfsOnce(t, openBoot(t, dir, boot("A")), b, base, la)
	rootfsOnce(t, openBoot(t, dir, boot("A")), b, base, lb)
	orphan := filepath.Join(dir, "*", "unsynced")
	dirs, _ := filepath.Glob(orphan)
	must(t, os.WriteFile(filepath.Join(dirs[0], digest.FromString("gone").Encoded()), []byte("A\n"), 0o644))
	if got := markers(t, dir); len(got) != 4 {
		t.Fatalf("markers before Prune: %q, want three chains' and the orphan", got)
	}
	if _, err := openBoot(t, dir, boot("A")).Prune(ctx, all); err != nil {
		t.Fatal(err)
	}
	if got := markers(t, dir); len(got) != 0 {
		t.Fatalf("markers after Prune: %q, want none", got)
	}
	lose(t, filepath.Join(a.Dir, "a"))
	after := rootfsOnce(t, openBoot(t, dir, boot("B")), b, base, la)
	wantContent(t, after.Dir, "a", "")

	// Another boot's chain: removed by a Prune of boot B once no process
	// of boot A leases it (it cannot be leased during B).
	lc := b.layer(t, func(b *tarB) { b.file("c", "c") })
	held := rootfs(t, openBoot(t, dir, boot("A")), b, lc)
	if _, err := openBoot(t, dir, boot("B")).Prune(ctx, all); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(held.Dir, "c")); err != nil {
		t.Fatalf("Prune removed a leased chain: %v", err)
	}
	must(t, held.Release())
	if _, err := openBoot(t, dir, boot("B")).Prune(ctx, all); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(held.Dir); !os.IsNotExist(err) {
		t.Errorf("Prune during boot B kept a chain of boot A never synced: %v", err)
	}
	if got := markers(t, dir); len(got) != 0 {
		t.Errorf("markers left: %q", got)
	}
	if _, err := os.Stat(filepath.Join(after.Dir, "a")); err != nil {
		t.Errorf("Prune removed a synced chain it was told to keep: %v", err)
	}
}

// TestCacheBootRaceRebuild: Caches of one process (their own lock
// descriptors, as processes have) racing for an image of another boot
// rebuild each chain once between them and all get the rebuilt tree.
func TestCacheBootRaceRebuild(t *testing.T) {
	b := newBlobs()
	layers := raceLayers(t, b)
	dir := cacheDir(t)
	first := rootfsOnce(t, openBoot(t, dir, boot("A")), b, layers...)
	lose(t, filepath.Join(first.Dir, "l2/f299"))
	dirs := raceRootfs(t, 4, dir, b, layers, boot("B"))
	for _, l := range layers {
		if got := b.openCount(l.Digest); got != 2 {
			t.Errorf("layer %s applied %d times, want twice: once per boot", l.Digest, got)
		}
	}
	for i := range dirs {
		if dirs[i] != first.Dir {
			t.Errorf("Rootfs %d got %s, want %s", i, dirs[i], first.Dir)
		}
	}
	wantContent(t, first.Dir, "l2/f299", strings.Repeat("x", 299))
}

// raceLayers are three layers of 300 files each.
func raceLayers(t *testing.T, b *memBlobs) []manifest.LayerDesc {
	var layers []manifest.LayerDesc
	for i := range 3 {
		layers = append(layers, b.layer(t, func(b *tarB) {
			for j := range 300 {
				b.file(fmt.Sprintf("l%d/f%03d", i, j), strings.Repeat("x", j))
			}
		}))
	}
	return layers
}

// TestCacheBootRaceProcesses: processes racing for an image of another
// boot rebuild each chain once between them and all lease the same tree.
func TestCacheBootRaceProcesses(t *testing.T) {
	const helperEnv = "IMGTOOL_CACHE_BOOT_HELPER"
	b := newBlobs()
	layers := raceLayers(t, b)
	if dir := os.Getenv(helperEnv); dir != "" {
		l := rootfs(t, openBoot(t, dir, boot("B")), b, layers...)
		fmt.Printf("APPLIED %d %s\n", l.Applied.Entries, l.Dir)
		return
	}
	dir := cacheDir(t)
	first := rootfsOnce(t, openBoot(t, dir, boot("A")), b, layers...)
	lose(t, filepath.Join(first.Dir, "l2/f299"))
	const n = 3
	applied := 0
	for i, r := range raceProcesses(t, n, "^TestCacheBootRaceProcesses$", helperEnv+"="+dir) {
		if r.leased != first.Dir {
			t.Errorf("helper %d leased %q, want %s", i, r.leased, first.Dir)
		}
		applied += r.applied
	}
	if applied != 900 {
		t.Errorf("%d processes applied %d entries between them, want the 900 of the three layers once", n, applied)
	}
	wantContent(t, first.Dir, "l2/f299", strings.Repeat("x", 299))
}
