package main_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
)

// TestBuildReproducible: two clean builds of the same inputs, from
// contexts at different paths made at different times, give the same
// manifest digest under SOURCE_DATE_EPOCH.
func TestBuildReproducible(t *testing.T) {
	df := "FROM base:1\nCOPY . /app\nRUN echo generated > /app/gen && mkdir -p /var/run-data\nWORKDIR /app\nCMD [\"/bin/sh\"]\n"
	var digests []string
	base := busyboxRootfs(t)
	for i := range 2 {
		c := newCLI(t)
		writeBase(t, c, base)
		c.env = append(c.env, "SOURCE_DATE_EPOCH=1700000000")
		dir := writeContext(t, filepath.Join(t.TempDir(), "checkout", strings.Repeat("x", i+1)), map[string]string{
			"Dockerfile": df, "src/main.go": "package main\n", "README": "hello\n",
		})
		digests = append(digests, strings.TrimSpace(c.ok("build", "-t", "repro:1", dir)))
		time.Sleep(1100 * time.Millisecond) // the second build's files are newer
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of the same inputs: %s and %s", digests[0], digests[1])
	}
}

// TestBuildOutputs: --output to an OCI layout, an OCI archive and a
// docker archive, --push to a registry, --iidfile and --metadata-file all
// name the same image.
func TestBuildOutputs(t *testing.T) {
	reg := newRegistry(t, nil)
	c := newCLI(t)
	busyboxBase(t, c)
	dir := writeContext(t, t.TempDir(), map[string]string{"Dockerfile": "FROM base:1\nCOPY f /f\n", "f": "data"})
	out := t.TempDir()
	ref := reg + "/team/app:1"
	digest := strings.TrimSpace(c.ok("build", "-t", ref, "--push", "--compression", "gzip",
		"-o", "type=oci,dest="+filepath.Join(out, "layout"),
		"-o", "type=oci-archive,dest="+filepath.Join(out, "oci.tar"),
		"-o", "type=docker-archive,dest="+filepath.Join(out, "docker.tar"),
		"-o", "type=registry,name="+reg+"/other/app:2",
		"--iidfile", filepath.Join(out, "iid"), "--metadata-file", filepath.Join(out, "meta.json"), dir))
	if got, err := crane.Digest(ref); err != nil || got != digest {
		t.Errorf("pushed %s: %v, want %s", got, err, digest)
	}
	if got, err := crane.Digest(reg + "/other/app:2"); err != nil || got != digest {
		t.Errorf("type=registry: %s %v, want %s", got, err, digest)
	}
	assertCreateMode(t, filepath.Join(out, "iid"), filepath.Join(out, "meta.json"), filepath.Join(out, "docker.tar"))
	if iid, _ := os.ReadFile(filepath.Join(out, "iid")); string(iid) != digest {
		t.Errorf("iidfile %q, want %s", iid, digest)
	}
	var meta map[string]any
	raw, _ := os.ReadFile(filepath.Join(out, "meta.json"))
	if err := json.Unmarshal(raw, &meta); err != nil || meta["containerimage.digest"] != digest ||
		meta["image.name"] != ref || !strings.HasPrefix(meta["containerimage.config.digest"].(string), "sha256:") {
		t.Errorf("metadata file: %s (%v)", raw, err)
	}
	for _, src := range []string{"oci:" + filepath.Join(out, "layout"), "oci-archive:" + filepath.Join(out, "oci.tar"), "docker-archive:" + filepath.Join(out, "docker.tar")} {
		other := newCLI(t)
		got := strings.TrimSpace(other.ok("pull", src))
		if src[0] != 'd' && got != digest { // docker archives hold Docker media types: another digest
			t.Errorf("%s holds %s, want %s", src, got, digest)
		}
		if files := exportFiles(t, other, got); files["f"] == nil || files["f"].Linkname != "data" {
			t.Errorf("%s lacks /f", src)
		}
	}
	// The filesystem alone: a directory, a tar file, a tar on stdout.
	c.ok("build", "-o", "type=local,dest="+filepath.Join(out, "fs"), "-o", filepath.Join(out, "fs2"), "-o", "type=tar,dest="+filepath.Join(out, "fs.tar"), dir)
	for _, p := range []string{filepath.Join(out, "fs", "f"), filepath.Join(out, "fs2", "f")} {
		if data, err := os.ReadFile(p); err != nil || string(data) != "data" {
			t.Errorf("type=local: %s: %q %v", p, data, err)
		}
	}
	if data, err := os.ReadFile(filepath.Join(out, "fs.tar")); err != nil || !bytes.Contains(data, []byte("data")) {
		t.Errorf("type=tar: %v", err)
	}
	r := c.run(nil, "build", "-q", "-o", "-", dir)
	if r.code != 0 || !bytes.Contains([]byte(r.stdout), []byte("data")) || strings.Contains(r.stdout, "sha256:") {
		t.Errorf("-o -: exit %d, %d bytes of stdout\n%s", r.code, len(r.stdout), r.stderr)
	}
	if line := c.fail(1, "build", "-o", filepath.Join(out, "fs"), dir); !strings.Contains(line, "not empty") {
		t.Errorf("type=local into a full directory: %s", line)
	}
	c.fail(2, "build", "--push", dir)
	c.fail(2, "build", "-o", "type=oci", dir)
	// An attribute imgtool would not act on is an error, not ignored.
	if line := c.fail(2, "build", "-o", "type=oci-archive,dest=x.tar,compression=gzip", dir); !strings.Contains(line, "--compression zstd|gzip|none") {
		t.Errorf("--output compression=gzip: %s", line)
	}
	if line := c.fail(2, "build", "-o", "type=oci,dest=x,tar=false", dir); !strings.Contains(line, `unknown attribute "tar"`) {
		t.Errorf("--output tar=false: %s", line)
	}
}
