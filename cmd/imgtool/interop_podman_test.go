package main_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/manifest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestInteropPodman pulls images imgtool pushed (zstd and gzip layers) into
// podman, pushes them back through `imgtool registry serve` as OCI and as
// Docker v2 schema 2, and pulls those into podman and imgtool by digest.
// podman runs as root with storage of its own under the test's temporary
// directory (vfs: no overlay mounts inside a CI container), so neither the
// host's images nor its configuration take part.
func TestInteropPodman(t *testing.T) {
	srv := startRegistry(t, t.TempDir())
	reg := srv.addr
	run := podmanClient(t, srv)
	// hasDigest tells whether podman's image named ref records that it is
	// repo@digest. (Images with one config are one podman image, whatever
	// their manifests: ask for the manifest digest of this repository.)
	hasDigest := func(ref, repo, digest string) bool {
		t.Helper()
		return slices.Contains(strings.Fields(run("image", "inspect", "--format", `{{join .RepoDigests " "}}`, ref)), repo+"@"+digest)
	}

	// Podman pulls what imgtool pushed; zstd needs an OCI manifest, Docker
	// v2 images need gzip, so the tests use one of each.
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	c.ok("import", rootfs, "-t", reg+"/imgtool/zstd:1")
	c.ok("import", rootfs, "-t", reg+"/imgtool/gzip:1", "--compression", "gzip")
	pushed := map[string]string{}
	for _, name := range []string{"zstd", "gzip"} {
		ref := reg + "/imgtool/" + name + ":1"
		pushed[name] = strings.TrimSpace(c.ok("push", ref))
		run("pull", "--tls-verify=false", ref)
		if !hasDigest(ref, reg+"/imgtool/"+name, pushed[name]) {
			t.Errorf("podman pulled %s, but not as %s that imgtool pushed", ref, pushed[name])
		}
	}

	// Podman pushes in both formats; the registry serves what it sent.
	formats := []struct{ format, source, repo, mediaType string }{
		{"oci", "zstd", "podman/oci", ocispec.MediaTypeImageManifest},
		{"oci", "gzip", "podman/oci-gzip", ocispec.MediaTypeImageManifest},
		{"v2s2", "gzip", "podman/v2s2", manifest.DockerManifest},
	}
	digests := map[string]string{}
	for _, f := range formats {
		digestFile := filepath.Join(t.TempDir(), "digest")
		run("push", "--tls-verify=false", "--format", f.format, "--digestfile", digestFile,
			reg+"/imgtool/"+f.source+":1", reg+"/"+f.repo+":1")
		raw, err := os.ReadFile(digestFile)
		if err != nil {
			t.Fatal(err)
		}
		digests[f.repo] = string(raw)
		if got := manifestDigest(t, reg, f.repo, "1"); got != digests[f.repo] {
			t.Errorf("podman push --format %s: pushed %s, registry serves %s", f.format, raw, got)
		}
		wantMediaType(t, reg, f.repo, "1", f.mediaType)
	}

	// An empty podman store pulls them back by digest; imgtool agrees.
	run("rmi", "--all", "--force")
	if out := run("images", "--quiet"); out != "" {
		t.Fatalf("podman images after rmi --all: %s", out)
	}
	c2 := newCLI(t)
	for _, f := range formats {
		ref := reg + "/" + f.repo + "@" + digests[f.repo]
		run("pull", "--tls-verify=false", ref)
		if !hasDigest(ref, reg+"/"+f.repo, digests[f.repo]) {
			t.Errorf("podman pull %s: not recorded under that digest", ref)
		}
		if got := strings.TrimSpace(c2.ok("pull", ref)); got != digests[f.repo] {
			t.Errorf("imgtool pull %s: %s", ref, got)
		}
	}
}

// podmanClient returns a runner of podman as root over a store of its
// own in a temporary directory, with no configuration from the host.
func podmanClient(t *testing.T, srv *server) func(args ...string) string {
	t.Helper()
	exe := debTool(t, "podman", "podman")
	if os.Geteuid() != 0 {
		t.Fatal("needs root: podman runs with a private store of its own here; run the suite as root (CI does: sudo make test)")
	}
	// podman refuses a runroot path longer than 50 characters, which a
	// subtest's t.TempDir() can be.
	dir, err := os.MkdirTemp("", "podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "storage.conf")
	storage := "[storage]\ndriver = \"vfs\"\ngraphroot = \"" + dir + "/root\"\nrunroot = \"" + dir + "/run\"\n"
	auth := filepath.Join(dir, "auth.json") // podman wants it to exist
	if err := os.WriteFile(conf, []byte(storage), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(auth, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	podman := client{t: t, srv: srv, exe: exe, env: []string{
		"HOME=" + dir, "CONTAINERS_STORAGE_CONF=" + conf, "REGISTRY_AUTH_FILE=" + auth}}
	base := []string{"--root", dir + "/root", "--runroot", dir + "/run", "--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs", "--events-backend", "none"}
	return func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(podman.run(append(base, args...)...))
	}
}
