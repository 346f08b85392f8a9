package main_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestS3GC: `imgtool registry gc --storage s3` collects over the bucket
// the replicas share: the blobs of a deleted image go, the tagged image
// still pulls through both replicas, and what GC freed is gone from both.
func TestS3GC(t *testing.T) {
	t.Parallel()
	a, b, prefix := startS3Pair(t)
	keep := pushRandom(t, a.addr+"/team/app:1")
	drop := pushRandom(t, b.addr+"/team/app:2")
	if err := remote.Delete(mustRef(t, a.addr+"/team/app@"+digestOf(t, drop))); err != nil {
		t.Fatalf("delete app:2 through a: %v", err)
	}

	c := newCLI(t)
	flags := append([]string{"registry", "gc", "--grace", "0s", "--format", "json"}, s3Flags(s3Env(t), prefix)...)
	var rep struct {
		Blobs int `json:"blobs"`
	}
	dry := c.ok(append(flags, "--dry-run")...)
	if err := json.Unmarshal([]byte(dry), &rep); err != nil || rep.Blobs == 0 {
		t.Fatalf("gc --dry-run over S3 reported %q (%v), want blobs to delete", dry, err)
	}
	layers, _ := drop.Layers()
	ld, _ := layers[0].Digest()
	blob := "/v2/team/app/blobs/" + ld.String()
	if code := request(t, http.MethodHead, b.addr, blob); code != http.StatusOK {
		t.Fatalf("HEAD %s after a dry run: %d, want 200 (a dry run deletes nothing)", blob, code)
	}

	out := c.ok(flags...)
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Blobs < 4 {
		t.Fatalf("gc over S3 reported %q (%v), want app:2's config and 3 layers deleted", out, err)
	}
	for _, s := range []*server{a, b} {
		if code := request(t, http.MethodHead, s.addr, blob); code != http.StatusNotFound {
			t.Errorf("HEAD %s through %s after gc: %d, want 404", blob, s.addr, code)
		}
		pullAndVerify(t, mustRef(t, s.addr+"/team/app:1"), keep)
		if tags := getJSON(t, s.addr, "/v2/team/app/tags/list")["tags"]; !slices.Equal(tags, []string{"1"}) {
			t.Errorf("tags through %s after gc: %q", s.addr, tags)
		}
	}
}

// TestS3Import: `imgtool registry import --storage s3` writes a bundle
// straight into a bucket, with no server, and a replica over that bucket
// serves it with the same digest.
func TestS3Import(t *testing.T) {
	t.Parallel()
	env := s3Env(t)
	src, _, _ := startS3Pair(t)
	img := pushRandom(t, src.addr+"/team/app:1")
	c := newCLI(t)
	bundle := filepath.Join(t.TempDir(), "bundle.tar")
	c.ok("save", "-o", bundle, "docker://"+src.addr+"/team/app:1")

	prefix := s3Prefix(t)
	c.ok(append([]string{"registry", "import"}, append(s3Flags(env, prefix), bundle)...)...)
	dst := startRegistry(t, t.TempDir(), s3Flags(env, prefix)...)
	pullAndVerify(t, mustRef(t, dst.addr+"/team/app:1"), img)
	if got := getJSON(t, dst.addr, "/v2/team/app/tags/list")["tags"]; !slices.Equal(got, []string{"1"}) {
		t.Errorf("tags after the import: %q", got)
	}
}
