package main_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/unpack"
)

// cacheImage puts ref's layer chains into the CLI root's unpack cache, as
// imgtool run and build will, and returns the lease on its top chain.
func cacheImage(t *testing.T, c *cli, ref string) *unpack.Lease {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, filepath.Join(c.root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	im, err := s.Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := store.ImageManifest(ctx, s, im.Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := store.ReadManifest(ctx, s, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := manifest.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := manifest.Layers(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := unpack.OpenCache(ctx, filepath.Join(c.root, "cache", "unpack"), unpack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := cache.Rootfs(ctx, s, layers)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestPruneUnpackCache: imgtool prune removes the cached chains of images
// no longer in the store, but not while another process leases them, and
// keeps those of the images still there.
func TestPruneUnpackCache(t *testing.T) {
	c := newCLI(t)
	twoLayerImage(t, c, "example.com/keep:1")
	tree := t.TempDir()
	os.WriteFile(filepath.Join(tree, "f"), []byte("gone soon"), 0o644)
	c.ok("import", tree, "-t", "example.com/gone:1")
	keep := cacheImage(t, c, "example.com/keep:1")
	keep.Release()
	gone := cacheImage(t, c, "example.com/gone:1")
	defer gone.Release()
	c.ok("rmi", "example.com/gone:1")

	if out := c.ok("prune"); !strings.Contains(out, "Unpack cache: reclaimed 0 B") {
		t.Errorf("prune with the chain leased: %s", out)
	}
	if _, err := os.Stat(filepath.Join(gone.Dir, "f")); err != nil {
		t.Fatalf("prune removed a chain another process leases: %v", err)
	}
	gone.Release()
	out := c.ok("prune")
	if !strings.Contains(out, "Unpack cache: reclaimed") || strings.Contains(out, "Unpack cache: reclaimed 0 B") {
		t.Errorf("prune after the release: %s", out)
	}
	if _, err := os.Stat(gone.Dir); !os.IsNotExist(err) {
		t.Errorf("the removed image's chain survived prune: %v", err)
	}
	if _, err := os.Stat(filepath.Join(keep.Dir, "new")); err != nil {
		t.Errorf("prune removed the chain of an image in the store: %v", err)
	}
	chains, _ := filepath.Glob(filepath.Join(c.root, "cache", "unpack", "*", "chains", "*"))
	if len(chains) != 2 {
		t.Errorf("chains after prune: %v, want the two of example.com/keep:1", chains)
	}
}
