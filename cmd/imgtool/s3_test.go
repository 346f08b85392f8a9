package main_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"
)

// The TestS3 tests run `imgtool registry serve` replicas over one bucket of
// a real S3 service: a Ceph RADOS Gateway that scripts/s3-up.sh starts on
// 127.0.0.1 the first time a test needs it, once per run of the package,
// and that stopS3 (from TestMain) stops by PID. make test runs them as a
// step of their own (go test -run '^TestS3'). They fail, never skip, when
// Ceph cannot be installed or started.
var s3svc struct {
	once sync.Once
	dir  string            // S3_DIR of the running service
	env  map[string]string // what s3-up.sh exported
	err  error
}

// s3Env starts the shared S3 service if it is not running yet and returns
// its settings. It also puts the service's credentials into this process's
// environment, which the registry processes inherit, as an operator's
// shell would hold them.
func s3Env(t *testing.T) map[string]string {
	t.Helper()
	s3svc.once.Do(func() { s3svc.env, s3svc.err = startS3() })
	if s3svc.err != nil {
		t.Fatalf("start the S3 service (Ceph RGW) with scripts/s3-up.sh: %v", s3svc.err)
	}
	return s3svc.env
}

func startS3() (map[string]string, error) {
	dir, err := os.MkdirTemp("", "imgtool-s3-")
	if err != nil {
		return nil, err
	}
	s3svc.dir = dir
	script, err := filepath.Abs("../../scripts/s3-up.sh")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("bash", script)
	// The watchdog of S3_OWNER_PID stops the daemons even when this test
	// binary is killed (by -timeout, say) before stopS3 runs.
	cmd.Env = append(os.Environ(), "S3_DIR="+dir, fmt.Sprintf("S3_OWNER_PID=%d", os.Getpid()), "S3_MAX_LIFETIME=3600")
	cmd.Stderr = os.Stderr // progress and, on failure, what went wrong
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", script, err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			env[k] = v
		}
	}
	for _, k := range []string{"S3_ENDPOINT", "S3_BUCKET", "S3_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if env[k] == "" {
			return nil, fmt.Errorf("%s printed no %s:\n%s", script, k, out)
		}
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if err := os.Setenv(k, env[k]); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(os.Stderr, "S3 service (Ceph RGW) ready at %s in %s\n", env["S3_ENDPOINT"], time.Since(start).Round(time.Second))
	return env, nil
}

// stopS3 stops the S3 service, if a test started it, by the PIDs its
// script recorded.
func stopS3() {
	if s3svc.dir == "" {
		return
	}
	script, _ := filepath.Abs("../../scripts/s3-down.sh")
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(), "S3_DIR="+s3svc.dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "stop the S3 service: %v\n", err)
	}
	os.RemoveAll(s3svc.dir)
}

// s3Prefix returns a key prefix of the bucket that no other test uses, so
// that each test sees a registry of its own (an empty catalog, say).
func s3Prefix(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	return "tests/" + name + "-" + hex.EncodeToString(b[:])
}

// s3Flags are the serve flags for the shared service under prefix.
func s3Flags(env map[string]string, prefix string) []string {
	return []string{"--storage", "s3", "--s3-endpoint", env["S3_ENDPOINT"], "--s3-region", env["S3_REGION"],
		"--s3-bucket", env["S3_BUCKET"], "--s3-path-style", "--s3-root-directory", prefix}
}

// startS3Pair starts two replicas of `imgtool registry serve` over one
// prefix of the shared bucket, each with a store root of its own, as two
// machines would have; extra flags go to both.
func startS3Pair(t *testing.T, extra ...string) (a, b *server, prefix string) {
	t.Helper()
	env := s3Env(t)
	prefix = s3Prefix(t)
	flags := append(s3Flags(env, prefix), extra...)
	a = startRegistry(t, t.TempDir(), flags...)
	b = startRegistry(t, t.TempDir(), flags...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replica a (%s) stderr:\n%s\nreplica b (%s) stderr:\n%s", a.addr, a.stderr(), b.addr, b.stderr())
		}
	})
	return a, b, prefix
}

// alternate returns the address of a reverse proxy that sends each request
// to the next of addrs in turn, as a round-robin load balancer does.
func alternate(t *testing.T, addrs ...string) string {
	t.Helper()
	var n atomic.Uint64
	proxies := make([]*httputil.ReverseProxy, len(addrs))
	for i, a := range addrs {
		proxies[i] = httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: a})
	}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxies[n.Add(1)%uint64(len(proxies))].ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return strings.TrimPrefix(front.URL, "http://")
}

// s3Client is a plain S3 client of the shared service, to look at the
// bucket behind the registry's back.
func s3Client(t *testing.T) *s3.S3 {
	t.Helper()
	env := s3Env(t)
	// A client of its own: given none, the SDK sets the CA bundle of the
	// environment on http.DefaultClient's transport, racing with the
	// tests that use that client meanwhile.
	sess, err := session.NewSession(aws.NewConfig().
		WithEndpoint(env["S3_ENDPOINT"]).WithRegion(env["S3_REGION"]).WithS3ForcePathStyle(true).
		WithHTTPClient(&http.Client{}).
		WithCredentials(credentials.NewStaticCredentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")))
	if err != nil {
		t.Fatal(err)
	}
	return s3.New(sess)
}

// openMultipartUploads lists the multipart uploads left open under prefix:
// storage that is invisible to listings but kept, and billed, until aborted.
func openMultipartUploads(t *testing.T, prefix string) []string {
	t.Helper()
	env := s3Env(t)
	out, err := s3Client(t).ListMultipartUploads(&s3.ListMultipartUploadsInput{
		Bucket: aws.String(env["S3_BUCKET"]), Prefix: aws.String(prefix + "/"),
	})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.StringValue(u.Key))
	}
	return keys
}

// s3Keys lists the objects under prefix.
func s3Keys(t *testing.T, prefix string) []string {
	t.Helper()
	env := s3Env(t)
	var keys []string
	err := s3Client(t).ListObjectsV2Pages(&s3.ListObjectsV2Input{
		Bucket: aws.String(env["S3_BUCKET"]), Prefix: aws.String(prefix + "/"),
	}, func(page *s3.ListObjectsV2Output, _ bool) bool {
		for _, o := range page.Contents {
			keys = append(keys, aws.StringValue(o.Key))
		}
		return true
	})
	if err != nil {
		t.Fatalf("list objects: %v", err)
	}
	return keys
}
