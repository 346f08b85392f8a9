package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// corpusCase is testdata/build/NAME/case.json: how to build the case's
// context and what the image must hold.
type corpusCase struct {
	Pre []struct {
		Dockerfile, Tag string
	} // images built first, from other Dockerfiles of the context
	Args  []string // extra build flags
	Again []string // when set, a second build with these flags gives the image checked
	Runs  []struct {
		Cmd    []string // after the image, as `imgtool run IMAGE CMD...`
		Stdout string
	}
	Present, Absent []string          // paths in the flattened image
	Owners          map[string]string // path -> "uid:gid" in the layers
}

// TestBuildCorpus builds every context under testdata/build as uid 65534
// (as a CI job does), then checks each image by running it with
// `imgtool run`, by reading its layers, and by handing its OCI layout
// output to umoci and skopeo, independent readers.
func TestBuildCorpus(t *testing.T) {
	cases, err := filepath.Glob("../../testdata/build/*/case.json")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no corpus under testdata/build: %v", err)
	}
	c := newCLI(t)
	corpusBase(t, c)
	work := nobodyDir(t)
	if os.Getuid() == 0 {
		chownTree(t, c.root, nobody)
		c.uid = nobody
	}
	for _, cj := range cases {
		src := filepath.Dir(cj)
		name := filepath.Base(src)
		t.Run(name, func(t *testing.T) {
			var cc corpusCase
			raw, err := os.ReadFile(cj)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &cc); err != nil {
				t.Fatalf("%s: %v", cj, err)
			}
			ctx := filepath.Join(work, name)
			if err := os.CopyFS(ctx, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			chownTree(t, ctx, c.uid)
			sub := *c // failures end the subtest, not the corpus
			sub.t = t
			buildCorpusCase(t, &sub, ctx, name, cc)
		})
	}
}

func buildCorpusCase(t *testing.T, c *cli, ctx, name string, cc corpusCase) {
	for _, p := range cc.Pre {
		c.ok("build", "--compression", "gzip", "-f", filepath.Join(ctx, p.Dockerfile), "-t", p.Tag, ctx)
	}
	tag := "corpus/" + name + ":1"
	layout := filepath.Join(ctx+".out", "layout")
	os.MkdirAll(filepath.Dir(layout), 0o755)
	chownTree(t, filepath.Dir(layout), c.uid)
	// gzip: Debian's umoci reads no zstd.
	build := append([]string{"build", "--compression", "gzip", "-t", tag, "-o", "type=oci,dest=" + layout + ",name=" + name}, cc.Args...)
	digest := strings.TrimSpace(c.ok(append(build, ctx)...))
	if cc.Again != nil {
		os.RemoveAll(layout)
		again := append([]string{"build", "--compression", "gzip", "-t", tag, "-o", "type=oci,dest=" + layout + ",name=" + name}, cc.Again...)
		digest = strings.TrimSpace(c.ok(append(again, ctx)...))
	}
	for _, r := range cc.Runs {
		if got := c.ok(append([]string{"run", "--rm", tag}, r.Cmd...)...); got != r.Stdout {
			t.Errorf("run %v: stdout %q, want %q", r.Cmd, got, r.Stdout)
		}
	}
	files := exportFiles(t, c, tag)
	for _, p := range cc.Present {
		if files[p] == nil {
			t.Errorf("%s missing from the image", p)
		}
	}
	for _, p := range cc.Absent {
		if files[p] != nil {
			t.Errorf("%s is in the image, want it absent", p)
		}
	}
	for p, want := range cc.Owners {
		if h := files[p]; h == nil || want != strconv.Itoa(h.Uid)+":"+strconv.Itoa(h.Gid) {
			t.Errorf("%s: owner %+v, want %s", p, h, want)
		}
	}
	// Independent readers of the OCI layout output.
	var sk struct{ Digest string }
	if err := json.Unmarshal([]byte(skopeo(t, "inspect", "oci:"+layout+":"+name)), &sk); err != nil || sk.Digest != digest {
		t.Errorf("skopeo inspect: digest %s (%v), want %s", sk.Digest, err, digest)
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command("umoci", "unpack", "--rootless", "--image", layout+":"+name, bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s (apt-get install umoci)", err, out)
	}
	for _, p := range cc.Present {
		if _, err := os.Lstat(filepath.Join(bundle, "rootfs", p)); err != nil {
			t.Errorf("umoci's rootfs lacks %s: %v", p, err)
		}
	}
	for _, p := range cc.Absent {
		if _, err := os.Lstat(filepath.Join(bundle, "rootfs", p)); err == nil {
			t.Errorf("umoci's rootfs has %s, want it absent", p)
		}
	}
}

// corpusBase writes "base:1": the busybox base with every applet linked,
// so that the corpus's Dockerfiles read like ordinary ones.
func corpusBase(t *testing.T, c *cli) {
	t.Helper()
	dir := busyboxRootfs(t)
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, a := range strings.Fields(string(out)) {
		os.Symlink("busybox", filepath.Join(dir, "bin", a)) // the ones already there stay
	}
	writeBase(t, c, dir)
}
