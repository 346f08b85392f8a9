package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// binary is the imgtool built once for every end-to-end test: the tests
// run it as a separate process, as users and CI do.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imgtool-e2e-")
	if err != nil {
		log.Fatal(err)
	}
	// Tests run it as uid 65534 too.
	if err := os.Chmod(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	binary = filepath.Join(dir, "imgtool")
	// As `make build` builds it: with the small container init embedded.
	build := exec.Command("sh", "../../scripts/build.sh", binary)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		log.Fatalf("build imgtool: %v", err)
	}
	code := m.Run()
	stopS3()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs imgtool commands against one store.
type cli struct {
	t    *testing.T
	root string
	env  []string
	uid  int // when non-zero and the tests run as root, commands run as this uid
}

func newCLI(t *testing.T) *cli {
	return &cli{t: t, root: t.TempDir(), env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
}

type result struct {
	stdout, stderr string
	code           int
}

func (c *cli) run(stdin io.Reader, args ...string) result {
	c.t.Helper()
	cmd := exec.Command(binary, append([]string{"--root", c.root, "--progress", "plain"}, args...)...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdin = stdin
	if c.uid != 0 && os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.uid)}}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// ok runs a command that must succeed and returns its stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run(nil, args...)
	if r.code != 0 {
		c.t.Fatalf("imgtool %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// fail runs a command that must fail with code and one line of error.
func (c *cli) fail(code int, args ...string) string {
	c.t.Helper()
	r := c.run(nil, args...)
	if r.code != code {
		c.t.Fatalf("imgtool %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "imgtool: ") {
		c.t.Errorf("imgtool %s: error not on one final line: %q", strings.Join(args, " "), r.stderr)
	}
	return last
}

type imageRow struct {
	Repository, Tag, Name, Digest string
	Size                          int64
}

func (c *cli) images() map[string]imageRow {
	c.t.Helper()
	var rows []imageRow
	if err := json.Unmarshal([]byte(c.ok("images", "--format", "json")), &rows); err != nil {
		c.t.Fatal(err)
	}
	out := map[string]imageRow{}
	for _, r := range rows {
		out[r.Name] = r
	}
	return out
}

// newRegistry starts `imgtool registry serve` for the test and returns its
// host:port. With wrap, the test sees the registry through wrap (to add
// auth or to stall responses) in front of a reverse proxy to the process.
func newRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	srv := startRegistry(t, t.TempDir(), "--access-log=false")
	if wrap == nil {
		return srv.addr
	}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: srv.addr})
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	front := httptest.NewServer(wrap(proxy))
	t.Cleanup(front.Close)
	return strings.TrimPrefix(front.URL, "http://")
}

func pushRandom(t *testing.T, ref string, opts ...remote.Option) v1.Image {
	t.Helper()
	img, err := random.Image(32<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestVersionAndUsage(t *testing.T) {
	c := newCLI(t)
	if out := c.ok("version"); !strings.HasPrefix(out, "imgtool ") {
		t.Errorf("version printed %q", out)
	}
	c.fail(2, "images", "--no-such-flag")
	c.fail(2, "pull")
	c.fail(2, "--progress", "loud", "images")
	c.fail(2, "pull", "--platform", "linux", "busybox")
	if out := c.ok("completion", "bash"); !strings.Contains(out, "imgtool") {
		t.Error("no bash completion")
	}
}

// TestRegistryRoundTrip is the main path: pull, tag, push to
// another repository, remove, prune, pull back; the digest never changes.
func TestRegistryRoundTrip(t *testing.T) {
	reg := newRegistry(t, nil)
	want := digestOf(t, pushRandom(t, reg+"/team/app:1"))
	c := newCLI(t)
	if got := strings.TrimSpace(c.ok("pull", reg+"/team/app:1")); got != want {
		t.Fatalf("pull printed %q, want %s", got, want)
	}
	c.ok("tag", reg+"/team/app:1", reg+"/other/app:2")
	c.ok("push", reg+"/other/app:2")
	c.ok("rmi", reg+"/team/app:1", reg+"/other/app:2")
	if n := len(c.images()); n != 0 {
		t.Fatalf("%d images left after rmi", n)
	}
	if out := c.ok("prune"); !strings.Contains(out, "Deleted 5 blobs") { // manifest, config, 3 layers
		t.Errorf("prune: %s", out)
	}
	c.ok("pull", reg+"/other/app:2")
	im, ok := c.images()[reg+"/other/app:2"]
	if !ok || im.Digest != want || im.Tag != "2" || im.Repository != reg+"/other/app" || im.Size < 3*32<<10 {
		t.Fatalf("after round trip: %+v", c.images())
	}
	var inspect struct {
		Descriptor struct{ Digest string }
		Manifest   struct{ Layers []any }
		Config     struct{ Architecture string }
	}
	if err := json.Unmarshal([]byte(c.ok("inspect", reg+"/other/app:2")), &inspect); err != nil {
		t.Fatal(err)
	}
	if inspect.Descriptor.Digest != want || len(inspect.Manifest.Layers) != 3 {
		t.Errorf("inspect: %+v", inspect)
	}
	table := c.ok("images")
	if !strings.HasPrefix(table, "REPOSITORY") || !strings.Contains(table, want[:19]) {
		t.Errorf("images table:\n%s", table)
	}
}

func TestBadInputLeavesStoreUnchanged(t *testing.T) {
	reg := newRegistry(t, nil)
	c := newCLI(t)
	pushRandom(t, reg+"/a/app:1")
	c.ok("pull", reg+"/a/app:1")
	before := c.images()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pull", reg + "/a/missing:1"}, "not found"},
		{[]string{"pull", "127.0.0.1:1/a/app:1"}, "cannot connect"},
		{[]string{"pull", "Bad_Ref:x:y"}, "parse reference"},
		{[]string{"push", "no-such-image:1"}, "not found in the local store"},
		{[]string{"tag", "no-such-image:1", "x:1"}, "not found"},
		{[]string{"rmi", "no-such-image:1"}, "not found"},
		{[]string{"load", "-i", "/nonexistent.tar"}, "no such file"},
		{[]string{"pull", "oci:/nonexistent"}, "not an OCI image layout"},
	} {
		line := c.fail(1, tc.args...)
		if !strings.Contains(line, tc.want) {
			t.Errorf("imgtool %s: %q does not say %q", strings.Join(tc.args, " "), line, tc.want)
		}
	}
	if after := c.images(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("store changed:\nbefore %v\nafter  %v", before, after)
	}
}
