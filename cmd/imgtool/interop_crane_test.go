package main_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestInteropCrane drives `imgtool registry serve` with crane (built from
// the go-containerregistry version imgtool's go.mod requires): it reads an
// image imgtool built (zstd layers) down to its files, pushes an image it
// makes on the fly, copies, tags, mutates, indexes, lists, deletes, and
// pulls back to an OCI layout that imgtool reads with the same digest.
func TestInteropCrane(t *testing.T) {
	srv := startRegistry(t, t.TempDir())
	reg := srv.addr
	crane := client{t: t, srv: srv, exe: goTool(t, cranePkg, ""), env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
	run := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(crane.run(args...))
	}

	// imgtool pushes; crane reads the manifest, every blob and the files.
	c := newCLI(t)
	c.ok("import", busyboxRootfs(t), "-t", reg+"/imgtool/bb:1")
	bb := strings.TrimSpace(c.ok("push", reg+"/imgtool/bb:1"))
	if got := run("digest", reg+"/imgtool/bb:1"); got != bb {
		t.Fatalf("crane digest: %s, imgtool pushed %s", got, bb)
	}
	if got := digest.FromString(crane.run("manifest", reg+"/imgtool/bb@"+bb)).String(); got != bb {
		t.Errorf("crane manifest by digest hashes to %s, want %s", got, bb)
	}
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	files := crane.run("export", reg+"/imgtool/bb:1", "-")
	if got := tarFile(t, files, "bin/busybox"); !bytes.Equal(got, busybox) {
		t.Errorf("crane export: bin/busybox has %d bytes, want %d", len(got), len(busybox))
	}

	// crane pushes an image it makes from a layer tar, then copies it.
	layer := filepath.Join(t.TempDir(), "layer.tar")
	writeTar(t, layer, map[string]string{"hello.txt": "hello from crane\n"})
	ref := run("append", "--oci-empty-base", "-f", layer, "-t", reg+"/crane/app:1")
	app := run("digest", reg+"/crane/app:1")
	// Every blob's digest and diffID (crane validate reads gzip layers only,
	// so not imgtool's zstd image).
	run("validate", "--remote", reg+"/crane/app:1")
	if ref != reg+"/crane/app@"+app {
		t.Errorf("crane append printed %q, want %s@%s", ref, reg+"/crane/app", app)
	}
	run("copy", reg+"/crane/app:1", reg+"/crane/copy:1")
	if got := run("digest", reg+"/crane/copy:1"); got != app {
		t.Errorf("crane copy: %s, want %s", got, app)
	}
	run("tag", reg+"/crane/copy:1", "v2")
	if got := strings.Fields(run("ls", reg+"/crane/copy")); !slices.Equal(got, []string{"1", "v2"}) {
		t.Errorf("crane ls after tag: %v", got)
	}
	mutated := run("mutate", reg+"/crane/app:1", "--label", "interop=crane", "-t", reg+"/crane/app:2")
	var cfg struct {
		Config struct{ Labels map[string]string }
	}
	if err := json.Unmarshal([]byte(run("config", mutated)), &cfg); err != nil || cfg.Config.Labels["interop"] != "crane" {
		t.Errorf("crane mutate: config labels %v (%v)", cfg.Config.Labels, err)
	}

	// An index over both images, pushed by crane and read back.
	run("index", "append", "-m", reg+"/crane/app:1", "-m", reg+"/imgtool/bb:1", "-t", reg+"/crane/idx:1")
	var idx struct {
		MediaType string
		Manifests []struct{ Digest string }
	}
	if err := json.Unmarshal([]byte(run("manifest", reg+"/crane/idx:1")), &idx); err != nil {
		t.Fatal(err)
	}
	if idx.MediaType != "application/vnd.oci.image.index.v1+json" || len(idx.Manifests) != 2 ||
		idx.Manifests[0].Digest != app || idx.Manifests[1].Digest != bb {
		t.Errorf("crane index: %+v", idx)
	}
	catalog := strings.Fields(run("catalog", reg))
	for _, repo := range []string{"crane/app", "crane/copy", "crane/idx", "imgtool/bb"} {
		if !slices.Contains(catalog, repo) {
			t.Errorf("crane catalog %v lacks %s", catalog, repo)
		}
	}

	// Back out to an OCI layout that imgtool reads: same digests.
	layout := filepath.Join(t.TempDir(), "layout")
	run("pull", "--format", "oci", reg+"/crane/app:1", reg+"/imgtool/bb:1", layout)
	c2 := newCLI(t)
	for _, want := range []string{app, bb} {
		if got := strings.TrimSpace(c2.ok("pull", "oci:"+layout+":"+want)); got != want {
			t.Errorf("imgtool pull of crane's layout: %s, want %s", got, want)
		}
	}

	// Deleting the copy by digest removes its tags, not the original.
	run("delete", reg+"/crane/copy@"+app)
	if out := crane.fail("manifest", reg+"/crane/copy:1"); !strings.Contains(out, "MANIFEST_UNKNOWN") {
		t.Errorf("manifest after delete: %s", out)
	}
	if got := run("ls", reg+"/crane/copy"); got != "" {
		t.Errorf("crane ls after delete: %q", got)
	}
	if got := run("digest", reg+"/crane/app:1"); got != app {
		t.Errorf("original after deleting the copy: %s", got)
	}
}

// writeTar writes a tar of regular files.
func writeTar(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg})
		tw.Write([]byte(files[name]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tarFile returns the content of name in the tar stream s.
func tarFile(t *testing.T, s, name string) []byte {
	t.Helper()
	tr := tar.NewReader(strings.NewReader(s))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the tar: %v", name, err)
		}
		if strings.TrimPrefix(h.Name, "./") == name {
			var b bytes.Buffer
			b.ReadFrom(tr)
			return b.Bytes()
		}
	}
}
