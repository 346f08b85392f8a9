package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rootfs writes a small tree; reverse creates it in the other order and
// at other times.
func rootfs(t *testing.T, reverse bool) string {
	t.Helper()
	root := t.TempDir()
	files := []string{"bin/sh", "etc/passwd", "etc/group", "usr/lib/x.so"}
	if reverse {
		for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
			files[i], files[j] = files[j], files[i]
		}
	}
	for _, f := range files {
		p := filepath.Join(root, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("content of "+f), 0o755); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return root
}

// TestImportReproducible: two imports of the same tree, made in different
// directories in a different order at different times, give the same
// manifest digest when SOURCE_DATE_EPOCH is set.
func TestImportReproducible(t *testing.T) {
	a, b := rootfs(t, false), rootfs(t, true)
	var digests []string
	for i, dir := range []string{a, b} {
		c := newCLI(t)
		c.env = append(c.env, "SOURCE_DATE_EPOCH=1700000000")
		d := strings.TrimSpace(c.ok("import", dir, "-t", "repro:1", "--change", `CMD ["/bin/sh"]`, "--change", "ENV A=b"))
		digests = append(digests, d)
		if i == 0 {
			var in struct {
				Config struct {
					Created string
					Config  struct {
						Cmd []string
						Env []string
					}
					RootFS struct {
						DiffIDs []string `json:"diff_ids"`
					} `json:"rootfs"`
				}
				Manifest struct{ Layers []struct{ MediaType string } }
			}
			if err := json.Unmarshal([]byte(c.ok("inspect", "repro:1")), &in); err != nil {
				t.Fatal(err)
			}
			if in.Config.Created != "2023-11-14T22:13:20Z" || strings.Join(in.Config.Config.Cmd, " ") != "/bin/sh" ||
				!strings.Contains(strings.Join(in.Config.Config.Env, " "), "A=b") || len(in.Config.RootFS.DiffIDs) != 1 ||
				in.Manifest.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
				t.Errorf("imported image: %+v", in)
			}
		}
	}
	if digests[0] != digests[1] {
		t.Fatalf("same tree imported twice: %s and %s", digests[0], digests[1])
	}
}

// TestImportTarball imports a tarball (compressed or not), as docker
// import does, and the image survives a push and pull.
func TestImportTarball(t *testing.T) {
	root := rootfs(t, false)
	dir := t.TempDir()
	reg := newRegistry(t, nil)
	c := newCLI(t)
	for _, tc := range []struct{ file, cmd string }{
		{"rootfs.tar", "tar -cf %[1]s -C %[2]s ."},
		{"rootfs.tar.gz", "tar -czf %[1]s -C %[2]s ."},
		{"rootfs.tar.zst", "tar -cf - -C %[2]s . | zstd -q -o %[1]s"},
	} {
		out := filepath.Join(dir, tc.file)
		if b, err := exec.Command("sh", "-c", fmt.Sprintf(tc.cmd, out, root)).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", tc.cmd, err, b)
		}
		ref := reg + "/imported/" + strings.ReplaceAll(tc.file, ".", "-") + ":1"
		c.ok("import", "--compression", "gzip", out, "-t", ref)
		c.ok("push", ref)
		c2 := newCLI(t)
		c2.ok("pull", ref)
	}
	c.fail(1, "import", filepath.Join(dir, "missing.tar"), "-t", "x:1")
	c.fail(2, "import", root) // no -t
	c.fail(2, "import", root, "-t", "x:1", "--compression", "lz4")
	c.fail(1, "import", root, "-t", "x:1", "--change", "FROB x")
	if n := len(c.images()); n != 3 {
		t.Errorf("failed imports changed the store: %d images", n)
	}
}

// TestImportReadByUmoci: umoci (an independent OCI implementation) unpacks
// an imported image from an OCI layout. Debian's umoci 0.4.7 reads no
// zstd, hence gzip.
func TestImportReadByUmoci(t *testing.T) {
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Fatal("umoci is not installed: run `make test` as root, or apt-get install umoci")
	}
	root := rootfs(t, false)
	c := newCLI(t)
	c.ok("import", "--compression", "gzip", root, "-t", "umoci/test:1")
	layout := filepath.Join(t.TempDir(), "layout")
	c.ok("push", "umoci/test:1", "oci:"+layout+":test")
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command("umoci", "unpack", "--rootless", "--image", layout+":test", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(bundle, "rootfs", "etc", "passwd"))
	if err != nil || string(got) != "content of etc/passwd" {
		t.Errorf("umoci unpacked etc/passwd as %q, %v", got, err)
	}
}
