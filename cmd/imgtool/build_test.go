package main_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/internal/testimage"
	"github.com/imgtool/imgtool/store"
)

// busyboxBase writes "base:1" into c's store: busybox-static with a few
// applets, and a passwd naming user app (1000) and group staff (50).
func busyboxBase(t *testing.T, c *cli) {
	t.Helper()
	writeBase(t, c, busyboxRootfs(t))
}

// busyboxRootfs makes the base image's tree.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\nstaff:x:50:\napp:x:1000:\n",
	}
	for p, content := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is needed at /bin/busybox: %v", err)
	}
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "echo", "cat", "ls", "mkdir", "id", "sleep", "touch", "stat", "chown"} {
		os.Symlink("busybox", filepath.Join(dir, "bin", a))
	}
	// A read-only directory, as Fedora's /usr/lib is.
	os.MkdirAll(filepath.Join(dir, "usr", "lib"), 0o755)
	os.Chmod(filepath.Join(dir, "usr", "lib"), 0o555)
	return dir
}

// writeBase makes the image of tree dir as "base:1" in c's store. Its
// history names dir: the same dir gives the same image.
func writeBase(t *testing.T, c *cli, dir string) {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, filepath.Join(c.root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := testimage.Write(ctx, s, testimage.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "base:1", d); err != nil {
		t.Fatal(err)
	}
}

func writeContext(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	for p, content := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type inspected struct {
	Descriptor struct{ Digest string }
	Manifest   struct {
		Layers      []struct{ MediaType string }
		Annotations map[string]string
	}
	Config struct {
		Config struct {
			Entrypoint, Cmd, Env []string
			User, WorkingDir     string
			Labels               map[string]string
			ExposedPorts         map[string]struct{}
			Healthcheck          struct{ Test []string }
		}
	}
}

func inspectImage(t *testing.T, c *cli, ref string) inspected {
	t.Helper()
	var in inspected
	if err := json.Unmarshal([]byte(c.ok("inspect", ref)), &in); err != nil {
		t.Fatal(err)
	}
	return in
}

// exportFiles flattens ref with imgtool export and returns its tar
// entries.
func exportFiles(t *testing.T, c *cli, ref string) map[string]*tar.Header {
	t.Helper()
	dir := t.TempDir()
	if c.uid != 0 && os.Getuid() == 0 {
		os.Chmod(filepath.Dir(dir), 0o755) // the test's temp root is 0700
		chownTree(t, dir, c.uid)
	}
	out := filepath.Join(dir, "fs.tar")
	c.ok("export", ref, "-o", out)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			data, _ := io.ReadAll(tr)
			h.Linkname = string(data) // content, for the checks
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
	}
}

// TestBuild is the main path: a multi-stage Dockerfile with
// RUN, COPY --from, COPY --chown and every config instruction, built into
// the store and tagged twice; config and files are what it says.
func TestBuild(t *testing.T) {
	c := newCLI(t)
	busyboxBase(t, c)
	dir := writeContext(t, t.TempDir(), map[string]string{
		"Dockerfile": `ARG BASE=base:1
FROM $BASE AS builder
RUN mkdir /out && echo compiled > /out/app
FROM ${BASE}
ARG VERSION
ENV APP=/srv
WORKDIR $APP
COPY --from=builder /out/app ./bin/app
COPY --chown=app:staff conf/ conf/
RUN echo "version $VERSION" > version
LABEL version=$VERSION
EXPOSE 8080
USER app
HEALTHCHECK CMD ["/bin/true"]
ENTRYPOINT ["/srv/bin/app"]
CMD ["--serve"]
`,
		"conf/app.conf": "port=8080\n",
		"conf/.secret":  "no",
		".dockerignore": "conf/.secret\n",
	})
	r := c.run(nil, "build", "-t", "app:1", "-t", "app:latest", "--build-arg", "VERSION=2.0", "--label", "extra=yes", "--annotation", "note=hi", dir)
	if r.code != 0 {
		t.Fatalf("build: %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"[builder 2/2] RUN mkdir", "[stage-1 7/13] RUN echo", "DONE"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, r.stderr)
		}
	}
	in := inspectImage(t, c, "app:1")
	if d := strings.TrimSpace(r.stdout); d != in.Descriptor.Digest || inspectImage(t, c, "app:latest").Descriptor.Digest != d {
		t.Errorf("build printed %q; app:1 is %s", d, in.Descriptor.Digest)
	}
	cfg := in.Config.Config
	if !reflect.DeepEqual(cfg.Entrypoint, []string{"/srv/bin/app"}) || !reflect.DeepEqual(cfg.Cmd, []string{"--serve"}) ||
		cfg.User != "app" || cfg.WorkingDir != "/srv" || cfg.Labels["version"] != "2.0" || cfg.Labels["extra"] != "yes" ||
		!reflect.DeepEqual(cfg.Healthcheck.Test, []string{"CMD", "/bin/true"}) || !strings.Contains(strings.Join(cfg.Env, " "), "APP=/srv") {
		t.Errorf("config: %+v", cfg)
	}
	if _, ok := cfg.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("ports %v", cfg.ExposedPorts)
	}
	if in.Manifest.Annotations["note"] != "hi" || !strings.HasSuffix(in.Manifest.Layers[len(in.Manifest.Layers)-1].MediaType, "+zstd") {
		t.Errorf("manifest: %+v", in.Manifest)
	}
	files := exportFiles(t, c, "app:1")
	if h := files["srv/bin/app"]; h == nil || h.Linkname != "compiled\n" {
		t.Errorf("srv/bin/app: %+v", h)
	}
	if h := files["srv/conf/app.conf"]; h == nil || h.Uid != 1000 || h.Gid != 50 {
		t.Errorf("conf/app.conf: %+v", h)
	}
	if _, ok := files["srv/conf/.secret"]; ok {
		t.Error(".dockerignore'd file copied")
	}
	if h := files["srv/version"]; h == nil || h.Linkname != "version 2.0\n" {
		t.Errorf("srv/version: %+v", h)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.root, "tmp")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}

	// BUILDKIT_PROGRESS=quiet, as docker build users set it, silences it.
	quiet := exec.Command(binary, "--root", c.root, "build", "-t", "app:1", dir)
	quiet.Env = append(os.Environ(), "BUILDKIT_PROGRESS=quiet", "IMGTOOL_PROGRESS=")
	var qerr strings.Builder
	quiet.Stderr = &qerr
	if out, err := quiet.Output(); err != nil || qerr.Len() != 0 || !strings.HasPrefix(string(out), "sha256:") {
		t.Errorf("BUILDKIT_PROGRESS=quiet: %v, stdout %q, stderr %q", err, out, qerr.String())
	}
}

// TestBuildErrors: bad input says what and where, exits 1, and adds no
// image to the store.
func TestBuildErrors(t *testing.T) {
	c := newCLI(t)
	busyboxBase(t, c)
	before := c.images()
	dir := t.TempDir()
	for _, tc := range []struct{ dockerfile, want string }{
		{"FROM base:1\nRUN echo partial; echo boom >&2; exit 7\n", `Dockerfile:2: RUN echo partial; echo boom >&2; exit 7: process "/bin/sh -c echo partial; echo boom >&2; exit 7" did not complete successfully: exit code: 7; its output ended with "partial\nboom"`},
		{"FROM base:1\nCOPY nothere /x\n", `Dockerfile:2: COPY nothere /x: "nothere" not found in the build context`},
		{"FROM base:1\nCOPY --from=ghost /x /x\n", "--from=ghost is neither a stage"},
		{"FROM base:1\nRUN [\"/bin/sh\", \n", "Dockerfile"},
		{"FROM base:1\nWORKDIR\n", "Dockerfile:2: WORKDIR: WORKDIR requires exactly one argument"},
	} {
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(tc.dockerfile), 0o644); err != nil {
			t.Fatal(err)
		}
		if line := c.fail(1, "build", "-t", "bad:1", dir); !strings.Contains(line, tc.want) {
			t.Errorf("%q:\n got %s\nwant %s", tc.dockerfile, line, tc.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM base:1 AS a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if line := c.fail(1, "build", "--target", "nope", dir); !strings.Contains(line, `target stage "nope" not found`) {
		t.Errorf("unknown target: %s", line)
	}
	if line := c.fail(1, "build", "--platform", "linux/s390x", dir); !strings.Contains(line, "only this machine's platform") {
		t.Errorf("--platform linux/s390x: %s", line)
	}
	c.fail(2, "build", "--output", "type=tar", dir)
	c.fail(2, "build", "--build-arg", "=x", dir)
	if after := c.images(); !reflect.DeepEqual(after, before) {
		t.Errorf("store changed: %v", after)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.root, "tmp")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
}
