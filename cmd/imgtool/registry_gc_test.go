package main_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// blobFiles counts the blobs stored under root's registry.
func blobFiles(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(root, "registry", "imgtool", "v1", "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "data" {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRegistryGC runs `imgtool registry gc` against the data of a running
// `imgtool registry serve`: a dry run reports and changes nothing, the
// real run deletes the untagged image and the orphan blob, and the tagged
// image still pulls whole, as does the deleted one once pushed again.
func TestRegistryGC(t *testing.T) {
	c := newCLI(t)
	srv := startRegistry(t, c.root, "--access-log=false")
	ref := func(tag string) name.Reference {
		r, err := name.ParseReference(srv.addr + "/gc/app:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	keep, _ := random.Image(2048, 2)
	drop, _ := random.Image(2048, 1)
	orphan, _ := random.Layer(1024, types.OCILayer)
	for tag, img := range map[string]v1.Image{"keep": keep, "drop": drop} {
		if err := remote.Write(ref(tag), img); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.WriteLayer(ref("keep").Context(), orphan); err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(ref("drop")); err != nil {
		t.Fatal(err)
	}
	before := blobFiles(t, c.root)

	var dry struct {
		DryRun                                bool
		Manifests, Blobs, Links, Repositories int
		Bytes                                 int64
	}
	out := c.ok("registry", "gc", "--dry-run", "--delete-untagged", "--grace", "0s", "--format", "json")
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatalf("gc --format json: %v\n%s", err, out)
	}
	// The untagged image's manifest, config and layer, and the orphan.
	if !dry.DryRun || dry.Manifests != 1 || dry.Blobs != 4 || dry.Links != 3 || dry.Repositories != 1 || dry.Bytes == 0 {
		t.Fatalf("dry run reported %+v", dry)
	}
	if n := blobFiles(t, c.root); n != before {
		t.Fatalf("dry run changed the blob count from %d to %d", before, n)
	}

	out = c.ok("registry", "gc", "--delete-untagged", "--grace", "0s")
	if !strings.HasPrefix(out, "deleted 1 manifests, 4 blobs (") || !strings.Contains(out, "3 blob links and 0 upload sessions in 1 repositories") {
		t.Fatalf("gc printed %q", out)
	}
	if n := blobFiles(t, c.root); n != before-4 {
		t.Fatalf("%d blobs after gc, want %d", n, before-4)
	}
	pulled, err := remote.Image(ref("keep"))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(pulled); err != nil {
		t.Fatalf("tagged image after gc: %v", err)
	}
	d, _ := drop.Digest()
	if _, err := remote.Image(ref("keep").Context().Digest(d.String())); err == nil {
		t.Fatal("untagged image still served after gc")
	}
	if err := remote.Write(ref("again"), drop); err != nil {
		t.Fatalf("push again after gc: %v", err)
	}
	if pulled, err = remote.Image(ref("again")); err != nil || validate.Image(pulled) != nil {
		t.Fatalf("image pushed again after gc: %v", err)
	}
	// Without a grace period override, everything just written is kept.
	if out := c.ok("registry", "gc", "--delete-untagged"); !strings.HasPrefix(out, "deleted 0 manifests, 0 blobs") {
		t.Fatalf("gc within the grace period printed %q", out)
	}
}

func TestRegistryGCBadInput(t *testing.T) {
	c := newCLI(t)
	c.fail(1, "registry", "gc") // no registry data under the root yet
	if err := os.MkdirAll(filepath.Join(c.root, "registry"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.fail(2, "registry", "gc", "extra")
	c.fail(1, "registry", "gc", "--format", "xml")
	c.fail(1, "registry", "gc", "--grace", "-1h")
	if out := c.ok("registry", "gc", "--dry-run"); !strings.HasPrefix(out, "would delete 0 manifests, 0 blobs") {
		t.Fatalf("gc of an empty registry printed %q", out)
	}
}
