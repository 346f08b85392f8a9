package main_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// twoLayerImage writes an image whose second layer deletes a file and
// replaces a directory wholesale (whiteout and opaque whiteout), made
// with the layer package's snapshot diff, into the CLI's store.
func twoLayerImage(t *testing.T, c *cli, ref string) {
	t.Helper()
	ctx := context.Background()
	tree := t.TempDir()
	for _, f := range []string{"keep", "gone", "d/x", "d/y"} {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(tree, f), []byte(f), 0o644)
	}
	s, err := store.Open(ctx, filepath.Join(c.root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put := func(ch layer.Changes) manifest.LayerDesc {
		var buf bytes.Buffer
		d, err := layer.Write(ctx, &buf, tree, ch, layer.Options{Compression: layer.Gzip})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Put(ctx, s, d.Descriptor, &buf); err != nil {
			t.Fatal(err)
		}
		return d
	}
	ch, _ := layer.Dir(tree)
	l1 := put(ch)
	before, err := layer.Take(tree)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(tree, "gone"))
	os.RemoveAll(filepath.Join(tree, "d"))
	os.MkdirAll(filepath.Join(tree, "d"), 0o755)
	os.WriteFile(filepath.Join(tree, "d", "z"), []byte("z"), 0o644)
	os.WriteFile(filepath.Join(tree, "new"), []byte("new"), 0o644)
	diff, err := layer.Diff(before, "")
	if err != nil {
		t.Fatal(err)
	}
	l2 := put(diff)
	img, err := manifest.Append(ocispec.Image{Platform: manifest.Native()}, []manifest.Step{{Layer: &l1, CreatedBy: "one"}, {Layer: &l2, CreatedBy: "two"}}, manifest.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := manifest.Image(img, []manifest.LayerDesc{l1, l2}, manifest.ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []manifest.Blob{blobs.Config, blobs.Manifest} {
		if err := store.Put(ctx, s, b.Descriptor, bytes.NewReader(b.Data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx, ref, blobs.Manifest.Descriptor); err != nil {
		t.Fatal(err)
	}
}

func listTree(t *testing.T, root string) string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return strings.Join(out, " ")
}

const wantTree = "d d/z keep new"

// TestWhiteoutsAgainstUmoci: imgtool unpack and export apply whiteouts as
// umoci (an independent implementation) does.
func TestWhiteoutsAgainstUmoci(t *testing.T) {
	c := newCLI(t)
	twoLayerImage(t, c, "wh/test:1")
	dest := filepath.Join(t.TempDir(), "rootfs")
	c.ok("unpack", "wh/test:1", dest)
	if got := listTree(t, dest); got != wantTree {
		t.Errorf("imgtool unpack: %s, want %s", got, wantTree)
	}

	layout := filepath.Join(t.TempDir(), "layout")
	c.ok("push", "wh/test:1", "oci:"+layout+":test")
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command("umoci", "unpack", "--rootless", "--image", layout+":test", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	if got, umoci := listTree(t, dest), listTree(t, filepath.Join(bundle, "rootfs")); got != umoci {
		t.Errorf("imgtool unpack gives %s, umoci %s", got, umoci)
	}

	out := filepath.Join(t.TempDir(), "rootfs.tar")
	c.ok("export", "wh/test:1", "-o", out)
	assertCreateMode(t, out)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimSuffix(h.Name, "/"))
	}
	if got := strings.Join(names, " "); got != wantTree {
		t.Errorf("export: %s, want %s", got, wantTree)
	}
}
