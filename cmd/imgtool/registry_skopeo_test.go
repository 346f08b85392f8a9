package main_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/imgtool/imgtool/manifest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestSkopeoInterop copies images into and out of `imgtool registry serve`
// with skopeo (a client with its own, independent implementation of the
// API), in OCI and Docker v2 schema 2 formats, and checks what the
// registry serves is what skopeo pushed.
func TestSkopeoInterop(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatal("skopeo is not installed; run scripts/deps.sh (Debian package skopeo)")
	}
	srv := startRegistry(t, t.TempDir())
	reg := "docker://" + srv.addr
	pushRandom(t, srv.addr+"/skopeo/src:1")
	dir := t.TempDir()
	copyImage := func(args ...string) {
		t.Helper()
		cmd := exec.Command(skopeo, append([]string{"--insecure-policy", "copy", "--retry-times", "0",
			"--src-tls-verify=false", "--dest-tls-verify=false"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir, "REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("skopeo copy %v: %v\n%s\nregistry log:\n%s", args, err, out, srv.stderr())
		}
	}
	copyImage("--format", "oci", reg+"/skopeo/src:1", reg+"/skopeo/oci:1")
	wantMediaType(t, srv.addr, "skopeo/oci", "1", ocispec.MediaTypeImageManifest)
	copyImage("--format", "v2s2", reg+"/skopeo/oci:1", reg+"/skopeo/v2s2:1")
	wantMediaType(t, srv.addr, "skopeo/v2s2", "1", manifest.DockerManifest)

	// Out to an OCI layout and back in under another name, byte for byte.
	layout := filepath.Join(dir, "layout")
	copyImage(reg+"/skopeo/oci:1", "oci:"+layout+":1")
	copyImage("--preserve-digests", "oci:"+layout+":1", reg+"/skopeo/back:1")
	if a, b := manifestDigest(t, srv.addr, "skopeo/oci", "1"), manifestDigest(t, srv.addr, "skopeo/back", "1"); a != b {
		t.Errorf("round trip through an OCI layout changed the digest: %s -> %s", a, b)
	}
	copyImage(reg+"/skopeo/v2s2:1", "dir:"+filepath.Join(dir, "v2s2"))
	raw, err := os.ReadFile(filepath.Join(dir, "v2s2", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ MediaType string }
	if json.Unmarshal(raw, &m); m.MediaType != manifest.DockerManifest {
		t.Errorf("pulled v2s2 image has media type %q", m.MediaType)
	}
}

func headManifest(t *testing.T, addr, repo, ref string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, "http://"+addr+"/v2/"+repo+"/manifests/"+ref, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD %s:%s: %s", repo, ref, resp.Status)
	}
	return resp
}

func wantMediaType(t *testing.T, addr, repo, ref, want string) {
	t.Helper()
	if got := headManifest(t, addr, repo, ref).Header.Get("Content-Type"); got != want {
		t.Errorf("%s:%s served as %q, want %q", repo, ref, got, want)
	}
}

func manifestDigest(t *testing.T, addr, repo, ref string) string {
	t.Helper()
	return headManifest(t, addr, repo, ref).Header.Get("Docker-Content-Digest")
}
