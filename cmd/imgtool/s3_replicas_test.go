package main_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
)

// TestS3ReplicasServeOneRegistry: what one replica stores, the other
// serves; what one deletes, the other no longer serves.
func TestS3ReplicasServeOneRegistry(t *testing.T) {
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

// TestS3ChunkedUploadAcrossReplicas sends each chunk of an upload to the
// other replica than the one before, with chunks smaller and larger than
// S3's 5 MiB minimum part: the blob comes out whole on both, and no
// multipart upload or upload state is left in the bucket.
func TestS3ChunkedUploadAcrossReplicas(t *testing.T) {
	a, b, prefix := startS3Pair(t)
	replicas := []string{a.addr, b.addr}
	const MiB = 1 << 20
	for _, tc := range []struct {
		name   string
		chunks []int
		last   int // bytes sent with the closing PUT
	}{
		{"small chunks", []int{1024, 1, 100 << 10, 7}, 5},
		{"chunks across the 5 MiB part minimum", []int{3 * MiB, 3 * MiB, 1024, MiB}, 0},
		{"a chunk over one part, then a byte", []int{11 * MiB, 1}, 3},
		{"empty", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			total := tc.last
			for _, n := range tc.chunks {
				total += n
			}
			data := make([]byte, total)
			rand.Read(data)
			loc := strings.TrimPrefix(postUpload(t, replicas[0], "chunked/app"), "http://"+replicas[0])
			off := 0
			for i, n := range tc.chunks {
				host, other := replicas[(i+1)%2], replicas[i%2]
				if off > 0 { // a chunk that does not continue the upload is refused
					patch(t, host, "http://"+host+loc, data[:1], "0-0", http.StatusRequestedRangeNotSatisfiable)
				}
				patch(t, host, "http://"+host+loc, data[off:off+n], fmt.Sprintf("%d-%d", off, off+n-1), http.StatusAccepted)
				off += n
				if got, want := uploadRange(t, other, loc), fmt.Sprintf("0-%d", max(off-1, 0)); got != want {
					t.Fatalf("after chunk %d: the other replica reports Range %q, want %q", i, got, want)
				}
			}
			host := replicas[(len(tc.chunks)+1)%2]
			d := digest.FromBytes(data)
			req, _ := http.NewRequest(http.MethodPut, "http://"+host+loc+"?digest="+d.String(), bytes.NewReader(data[off:]))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("closing PUT: %s", resp.Status)
			}
			for _, r := range replicas {
				if got := getBlob(t, r, "/v2/chunked/app/blobs/"+d.String()); !bytes.Equal(got, data) {
					t.Fatalf("blob through %s: %d bytes, digest %s, want %d bytes", r, len(got), digest.FromBytes(got), len(data))
				}
			}
		})
	}
	checkBucketClean(t, prefix)
}

// TestS3UploadCancelAndPurgeAcrossReplicas: an upload cancelled through one
// replica is unknown to the other, and a replica started with a short
// --upload-ttl purges what another replica's clients abandoned; neither
// leaves a multipart upload behind in the bucket.
func TestS3UploadCancelAndPurgeAcrossReplicas(t *testing.T) {
	a, b, prefix := startS3Pair(t, "--access-log=false")
	chunk := bytes.Repeat([]byte("x"), 4096)

	cancelled := postUpload(t, a.addr, "cancel/app")
	patch(t, b.addr, strings.Replace(cancelled, a.addr, b.addr, 1), chunk, "0-4095", http.StatusAccepted)
	if code := request(t, http.MethodDelete, a.addr, strings.TrimPrefix(cancelled, "http://"+a.addr)); code != http.StatusNoContent {
		t.Fatalf("cancel through a: %d", code)
	}
	if code := request(t, http.MethodGet, b.addr, strings.TrimPrefix(cancelled, "http://"+a.addr)); code != http.StatusNotFound {
		t.Fatalf("status through b of the upload cancelled through a: %d, want 404", code)
	}

	abandoned := postUpload(t, b.addr, "purge/app")
	patch(t, b.addr, abandoned, chunk, "0-4095", http.StatusAccepted)
	time.Sleep(1100 * time.Millisecond)
	startRegistry(t, t.TempDir(), append(s3Flags(s3Env(t), prefix), "--access-log=false", "--upload-ttl", "1s")...)
	path := strings.TrimPrefix(abandoned, "http://"+b.addr)
	deadline := time.Now().Add(20 * time.Second)
	for request(t, http.MethodGet, a.addr, path) != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("the upload abandoned for over --upload-ttl was not purged within 20s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkBucketClean(t, prefix)
}

// TestS3Conformance runs the OCI conformance suite against the pair of
// replicas through a round-robin front: consecutive requests of every
// check, uploads included, reach different replicas.
func TestS3Conformance(t *testing.T) {
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

// TestS3ServeRefusesBadBucket: a bucket that does not exist, or wrong
// credentials, stop serve at start with what to check.
func TestS3ServeRefusesBadBucket(t *testing.T) {
	env := s3Env(t)
	c := newCLI(t)
	flags := s3Flags(env, s3Prefix(t))
	missing := append(slices.Clone(flags), "--s3-bucket", "no-such-bucket")
	if msg := c.fail(1, append([]string{"registry", "serve", "--addr", "127.0.0.1:0"}, missing...)...); !strings.Contains(msg, "NoSuchBucket") {
		t.Errorf("missing bucket: %s", msg)
	}
	c.env = append(c.env, "AWS_SECRET_ACCESS_KEY=wrong-secret")
	if msg := c.fail(1, append([]string{"registry", "serve", "--addr", "127.0.0.1:0"}, flags...)...); !strings.Contains(msg, "AWS_ACCESS_KEY_ID") || strings.Contains(msg, "wrong-secret") {
		t.Errorf("wrong secret: %s", msg)
	}
}

// checkBucketClean fails when uploads left state or open multipart uploads
// under prefix.
func checkBucketClean(t *testing.T, prefix string) {
	t.Helper()
	if open := openMultipartUploads(t, prefix); len(open) != 0 {
		t.Errorf("multipart uploads left open: %q", open)
	}
	for _, k := range s3Keys(t, prefix) {
		if strings.Contains(k, "/_uploads/") {
			t.Errorf("upload state left in the bucket: %s", k)
		}
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

func uploadRange(t *testing.T, addr, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("upload status through %s: %s", addr, resp.Status)
	}
	return resp.Header.Get("Range")
}

func getBlob(t *testing.T, addr, path string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s through %s: %s %v", path, addr, resp.Status, err)
	}
	return body
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
