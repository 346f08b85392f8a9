package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestS3ReplicasServeOneRegistry: what one replica stores, the other
// serves; what one deletes, the other no longer serves.
func TestS3ReplicasServeOneRegistry(t *testing.T) {
	t.Parallel() // independent: each test has a key prefix of its own
	a, b, _ := startS3Pair(t)
	img := pushRandom(t, a.addr+"/team/app:1")
	want := digestOf(t, img)

	c := newCLI(t)
	if got := strings.TrimSpace(c.ok("pull", b.addr+"/team/app:1")); got != want {
		t.Fatalf("pull through the other replica printed %q, want %s", got, want)
	}
	pullAndVerify(t, mustRef(t, b.addr+"/team/app@"+want), img)

	// A push through b mounts the blobs a stored into another repository.
	c.ok("tag", b.addr+"/team/app:1", b.addr+"/other/app:2")
	c.ok("push", b.addr+"/other/app:2")
	pullAndVerify(t, mustRef(t, a.addr+"/other/app:2"), img)
	for _, s := range []*server{a, b} {
		if got := getJSON(t, s.addr, "/v2/_catalog")["repositories"]; !slices.Equal(got, []string{"other/app", "team/app"}) {
			t.Errorf("catalog on %s: %q", s.addr, got)
		}
	}

	// A manifest deleted through a is gone through b, with its tag.
	if err := remote.Delete(mustRef(t, a.addr+"/team/app@"+want)); err != nil {
		t.Fatalf("delete through a: %v", err)
	}
	if _, err := remote.Get(mustRef(t, b.addr+"/team/app:1")); err == nil || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Fatalf("pull through b after the delete through a: %v, want MANIFEST_UNKNOWN", err)
	}
	if got := getJSON(t, b.addr, "/v2/team/app/tags/list")["tags"]; len(got) != 0 {
		t.Errorf("tags through b after the delete: %q", got)
	}
	pullAndVerify(t, mustRef(t, b.addr+"/other/app:2"), img)

	// A repository whose name prefixes another's does not exist.
	for _, s := range []*server{a, b} {
		if code := request(t, http.MethodGet, s.addr, "/v2/team/ap/tags/list"); code != http.StatusNotFound {
			t.Errorf("tags of team/ap (only team/app exists) through %s: %d, want 404", s.addr, code)
		}
	}

	// A blob link deleted through b is gone through a.
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	blob := "/v2/other/app/blobs/" + ld.String()
	if code := request(t, http.MethodDelete, b.addr, blob); code != http.StatusAccepted {
		t.Fatalf("DELETE %s through b: %d", blob, code)
	}
	if code := request(t, http.MethodHead, a.addr, blob); code != http.StatusNotFound {
		t.Errorf("HEAD %s through a after the delete through b: %d, want 404", blob, code)
	}

	secret := os.Getenv("AWS_SECRET_ACCESS_KEY")
	for _, s := range []*server{a, b} {
		if log := s.stderr(); secret == "" || strings.Contains(log, secret) || !strings.Contains(log, "method=") {
			t.Errorf("replica log has the secret key, or no access log:\n%s", log)
		}
	}
}

// TestS3Conformance runs the OCI conformance suite against the pair of
// replicas through a round-robin front: consecutive requests of every
// check, uploads included, reach different replicas.
func TestS3Conformance(t *testing.T) {
	t.Parallel() // independent: each test has a key prefix of its own
	suite := filepath.Join(t.TempDir(), "conformance")
	build := exec.Command("go", "build", "-o", suite, "github.com/opencontainers/distribution-spec/conformance")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the conformance suite: %v\n%s", err, out)
	}
	a, b, prefix := startS3Pair(t, "--access-log=false", "--allow-sparse")
	runConformance(t, suite, alternate(t, a.addr, b.addr), "true")
	if open := openMultipartUploads(t, prefix); len(open) != 0 {
		t.Errorf("multipart uploads left open after the suite: %q", open)
	}
}

// TestS3ServeBucketAndCredentials: a bucket that does not exist, or wrong
// credentials, stop serve at start with what to check; credentials from
// the shared credentials file work as well as from the environment.
func TestS3ServeBucketAndCredentials(t *testing.T) {
	t.Parallel() // independent: each test has a key prefix of its own
	env := s3Env(t)
	c := newCLI(t)
	flags := s3Flags(env, s3Prefix(t))
	serve := append([]string{"registry", "serve", "--addr", "127.0.0.1:0"}, flags...)
	if msg := c.fail(1, append(slices.Clone(serve), "--s3-bucket", "no-such-bucket")...); !strings.Contains(msg, "NoSuchBucket") {
		t.Errorf("missing bucket: %s", msg)
	}
	wrong := &cli{t: t, root: c.root, env: append(slices.Clone(c.env), "AWS_SECRET_ACCESS_KEY=wrong-secret")}
	if msg := wrong.fail(1, serve...); !strings.Contains(msg, "SignatureDoesNotMatch") || strings.Contains(msg, "wrong-secret") {
		t.Errorf("wrong secret: %s", msg)
	}

	creds := filepath.Join(t.TempDir(), "credentials")
	profile := fmt.Sprintf("[imgtool-test]\naws_access_key_id = %s\naws_secret_access_key = %s\n", env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
	if err := os.WriteFile(creds, []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, append([]string{"--root", c.root}, serve...)...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=",
		"AWS_SHARED_CREDENTIALS_FILE="+creds, "AWS_PROFILE=imgtool-test")
	srv := &server{cmd: cmd}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = (*lockedWriter)(srv)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.stop(t) })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("serve with a shared credentials file: %v\n%s", err, srv.stderr())
	}
	if code := request(t, http.MethodGet, strings.TrimSpace(line), "/v2/_catalog"); code != http.StatusOK {
		t.Errorf("catalog with credentials from a shared credentials file: %d\n%s", code, srv.stderr())
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func request(t *testing.T, method, addr, path string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+addr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func getJSON(t *testing.T, addr, path string) map[string][]string {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("GET %s: %s: %v", path, resp.Status, err)
	}
	out := map[string][]string{}
	for k, raw := range v {
		var list []string
		if json.Unmarshal(raw, &list) == nil {
			out[k] = list
		}
	}
	return out
}
