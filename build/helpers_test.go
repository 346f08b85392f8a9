package build

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/internal/compression"
	"github.com/imgtool/imgtool/internal/testimage"
	"github.com/imgtool/imgtool/store"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// applets are the busybox commands the test base image links.
var applets = []string{"sh", "echo", "cat", "ls", "mkdir", "touch", "rm", "id", "chmod", "chown", "printf", "true", "false", "env", "pwd", "sleep", "wc", "test"}

// baseStore makes a store holding "base:1", a busybox image with a
// passwd naming user app (1000:1000) and group staff (50).
func baseStore(t *testing.T) *store.Store {
	t.Helper()
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
	mustWrite(t, filepath.Join(dir, "etc/group"), "root:x:0:\nstaff:x:50:\napp:x:1000:\n")
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is needed at /bin/busybox: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	d, err := testimage.Write(context.Background(), s, testimage.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(context.Background(), "base:1", d); err != nil {
		t.Fatal(err)
	}
	return s
}

func mustWrite(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// contextDir makes a build context from path → content.
func contextDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		mustWrite(t, filepath.Join(dir, p), c)
	}
	return dir
}

// testBuild builds dockerfile in ctxDir into s and returns the result and
// the progress output.
func testBuild(t *testing.T, s *store.Store, ctxDir, dockerfile string, mod func(*Request)) (Result, string, error) {
	t.Helper()
	var out bytes.Buffer
	b := &Builder{Store: s, Executor: unshareExecutor{}, TempDir: filepath.Join(t.TempDir(), "tmp"), Progress: &out}
	req := Request{ContextDir: ctxDir, Dockerfile: []byte(dockerfile)}
	if mod != nil {
		mod(&req)
	}
	res, err := b.Build(context.Background(), req)
	if err == nil {
		// The build's temporary directory is gone.
		if entries, _ := os.ReadDir(b.TempDir); len(entries) != 0 {
			t.Errorf("temporary files left: %v", entries)
		}
	}
	return res, out.String(), err
}

func mustBuild(t *testing.T, s *store.Store, ctxDir, dockerfile string) Result {
	t.Helper()
	res, out, err := testBuild(t, s, ctxDir, dockerfile, nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return res
}

// imageConfig reads a built image's config.
func imageConfig(t *testing.T, s *store.Store, res Result) dockerspec.DockerOCIImage {
	t.Helper()
	raw, err := readBlob(context.Background(), s, res.Config)
	if err != nil {
		t.Fatal(err)
	}
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &img); err != nil {
		t.Fatal(err)
	}
	return img
}

// entry is one file of an image as its layers leave it.
type entry struct {
	hdr  *tar.Header
	data string
}

// layerFiles reads layer n of the image (negative: from the end).
func layerFiles(t *testing.T, s *store.Store, res Result, n int) map[string]entry {
	t.Helper()
	ctx := context.Background()
	m, err := store.ImageManifest(ctx, s, res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if n < 0 {
		n += len(m.Layers)
	}
	return readLayer(t, s, m.Layers[n])
}

func readLayer(t *testing.T, s *store.Store, d ocispec.Descriptor) map[string]entry {
	t.Helper()
	rc, err := s.Open(context.Background(), d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r, _, err := compression.Decompress(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string]entry{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out[strings.TrimSuffix(h.Name, "/")] = entry{hdr: h, data: string(data)}
	}
}

func layerCount(t *testing.T, s *store.Store, res Result) int {
	t.Helper()
	m, err := store.ImageManifest(context.Background(), s, res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	return len(m.Layers)
}

// imageFile finds path in the image's top-most layer that holds it.
func imageFile(t *testing.T, s *store.Store, res Result, p string) entry {
	t.Helper()
	for i := layerCount(t, s, res) - 1; i >= 0; i-- {
		if e, ok := layerFiles(t, s, res, i)[p]; ok {
			return e
		}
	}
	return entry{}
}
