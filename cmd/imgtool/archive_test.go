package main_test

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tarMembers reads the member names and the small JSON members of a tar.
func tarMembers(t *testing.T, path string) (map[string]bool, map[string][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, small := map[string]bool{}, map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, small
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
		if strings.HasSuffix(h.Name, ".json") || h.Name == "repositories" || h.Name == "oci-layout" {
			small[h.Name], _ = io.ReadAll(tr)
		}
	}
}

func skopeo(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Fatal("skopeo is not installed: run `make test` as root, or apt-get install skopeo")
	}
	out, err := exec.Command("skopeo", append([]string{"--insecure-policy"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestSaveLoad round-trips images through both archive formats, checks
// the docker archive has what docker load reads, and has skopeo (an
// independent implementation) read what imgtool wrote and the reverse.
func TestSaveLoad(t *testing.T) {
	reg := newRegistry(t, nil)
	a := digestOf(t, pushRandom(t, reg+"/x/a:1"))
	b := digestOf(t, pushRandom(t, reg+"/x/b:1"))
	c := newCLI(t)
	c.ok("pull", reg+"/x/a:1")
	c.ok("pull", reg+"/x/b:1")
	c.ok("tag", reg+"/x/a:1", "busybox")
	dir := t.TempDir()
	dockerTar, ociTar := filepath.Join(dir, "docker.tar"), filepath.Join(dir, "oci.tar")
	c.ok("save", "-o", dockerTar, "busybox", reg+"/x/b:1")
	c.ok("save", "--format", "oci", "-o", ociTar, reg+"/x/a:1")
	assertCreateMode(t, dockerTar, ociTar)

	// What docker load reads: manifest.json entries whose files exist, and
	// repositories.
	names, small := tarMembers(t, dockerTar)
	var entries []struct {
		Config           string
		RepoTags, Layers []string
	}
	if err := json.Unmarshal(small["manifest.json"], &entries); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(entries) != 2 || entries[0].RepoTags[0] != "busybox:latest" || entries[1].RepoTags[0] != reg+"/x/b:1" {
		t.Fatalf("manifest.json entries: %+v", entries)
	}
	for _, e := range entries {
		for _, m := range append([]string{e.Config}, e.Layers...) {
			if !names[m] {
				t.Errorf("manifest.json names %s, which the archive lacks", m)
			}
		}
	}
	var repos map[string]map[string]string
	if err := json.Unmarshal(small["repositories"], &repos); err != nil || repos["busybox"]["latest"] == "" {
		t.Errorf("repositories: %s (%v)", small["repositories"], err)
	}
	if !names["oci-layout"] || !names["index.json"] {
		t.Error("docker archive is not also an OCI layout")
	}

	// skopeo reads both archives.
	if out := skopeo(t, "inspect", "docker-archive:"+dockerTar+":busybox:latest"); !strings.Contains(out, `"Layers"`) {
		t.Errorf("skopeo inspect docker-archive: %s", out)
	}
	skopeoDir := filepath.Join(dir, "skopeo-layout")
	skopeo(t, "copy", "oci-archive:"+ociTar, "oci:"+skopeoDir+":a")
	// skopeo converts the Docker v2 manifest to OCI on the way into an OCI
	// layout, so the manifest digest changes; the layers must not.
	var sk struct {
		Digest string
		Layers []string
	}
	if err := json.Unmarshal([]byte(skopeo(t, "inspect", "oci:"+skopeoDir+":a")), &sk); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sk.Layers) != fmt.Sprint(layerDigests(t, c, reg+"/x/a:1")) {
		t.Errorf("skopeo read layers %v from imgtool's OCI archive, want %v", sk.Layers, layerDigests(t, c, reg+"/x/a:1"))
	}

	// Several images cannot go to one name.
	if line := c.fail(1, "copy", "docker-archive:"+dockerTar, "oci:"+filepath.Join(dir, "one")+":x"); !strings.Contains(line, "holds 2 images") {
		t.Errorf("copy of a 2-image archive to one name: %q", line)
	}
	c.ok("copy", "docker-archive:"+dockerTar+":busybox:latest", "oci:"+filepath.Join(dir, "one")+":x")

	// imgtool loads both, and stdin, into a fresh store with digests kept.
	c2 := newCLI(t)
	c2.ok("load", "-i", dockerTar)
	f, err := os.Open(ociTar)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if r := c2.run(f, "load"); r.code != 0 {
		t.Fatalf("load from stdin: %s", r.stderr)
	}
	got := c2.images()
	for n, want := range map[string]string{"docker.io/library/busybox:latest": a, reg + "/x/b:1": b, reg + "/x/a:1": a} {
		if got[n].Digest != want {
			t.Errorf("after load: %s is %q, want %s", n, got[n].Digest, want)
		}
	}

	// A legacy docker archive (skopeo writes that format) and an OCI layout
	// written by skopeo load and pull too.
	legacy := filepath.Join(dir, "legacy.tar")
	skopeo(t, "copy", "oci:"+skopeoDir+":a", "docker-archive:"+legacy+":legacy/img:1")
	c2.ok("load", "-i", legacy)
	c2.ok("pull", "oci:"+skopeoDir+":a")
	var inspect struct{ Manifest struct{ Layers []any } }
	if err := json.Unmarshal([]byte(c2.ok("inspect", "legacy/img:1")), &inspect); err != nil || len(inspect.Manifest.Layers) != 3 {
		t.Errorf("legacy archive image: %+v, %v", inspect, err)
	}
	if got := c2.images()["docker.io/library/a:latest"].Digest; got != sk.Digest {
		t.Errorf("pull oci:DIR:a gave %q, want skopeo's %s", got, sk.Digest)
	}
}

func layerDigests(t *testing.T, c *cli, ref string) []string {
	t.Helper()
	var m struct {
		Manifest struct{ Layers []struct{ Digest string } }
	}
	if err := json.Unmarshal([]byte(c.ok("inspect", ref)), &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range m.Manifest.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// A failed save leaves no archive behind.
func TestSaveFailureLeavesNoFile(t *testing.T) {
	c := newCLI(t)
	out := filepath.Join(t.TempDir(), "x.tar")
	// Not in the store, so read from its registry, which is not there.
	c.fail(1, "save", "-o", out, "127.0.0.1:1/nope:1")
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("failed save left %s: %v", out, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 0 {
		t.Errorf("failed save left temporary files: %v", entries)
	}
}

// assertCreateMode checks that output files got the mode os.Create gives
// under the test's umask (0666 less the umask), as docker's outputs do,
// not the 0600 of a temporary file.
func assertCreateMode(t *testing.T, paths ...string) {
	t.Helper()
	ref, err := os.Create(filepath.Join(t.TempDir(), "ref"))
	if err != nil {
		t.Fatal(err)
	}
	ref.Close()
	want, err := os.Stat(ref.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want.Mode().Perm() {
			t.Errorf("%s: mode %o, want %o as os.Create makes", p, fi.Mode().Perm(), want.Mode().Perm())
		}
	}
}
