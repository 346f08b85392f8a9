package main_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// addUser runs `imgtool registry user add` with the password on stdin.
func addUser(t *testing.T, c *cli, user, password string, extra ...string) {
	t.Helper()
	r := c.run(strings.NewReader(password+"\n"), append([]string{"registry", "user", "add", user, "--password-stdin"}, extra...)...)
	if r.code != 0 {
		t.Fatalf("registry user add %s: exit %d\n%s", user, r.code, r.stderr)
	}
}

// waitLog waits (bounded) for the server's stderr to contain want.
func (s *server) waitLog(t *testing.T, want string) string {
	t.Helper()
	for range 100 {
		if log := s.stderr(); strings.Contains(log, want) {
			return log
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("registry log never showed %q:\n%s", want, s.stderr())
	return ""
}

// get sends a request with optional basic credentials ("user:password").
func get(t *testing.T, method, url, creds string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u, p, ok := strings.Cut(creds, ":"); ok {
		req.SetBasicAuth(u, p)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestRegistryTLSAndLoginWithSkopeo serves HTTPS with a self-signed
// certificate and htpasswd logins, trusts the printed CA with skopeo's
// --cert-dir (no --tls-verify=false anywhere on that side), logs in, and
// copies an image in and back out byte for byte.
func TestRegistryTLSAndLoginWithSkopeo(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatal("skopeo is not installed; run scripts/deps.sh (Debian package skopeo)")
	}
	c := newCLI(t)
	addUser(t, c, "alice", "correct horse")
	srv := startRegistry(t, c.root, "--tls-self-signed", "--htpasswd", filepath.Join(c.root, "registry-htpasswd"))
	certDir := filepath.Join(c.root, "registry-tls")
	log := srv.waitLog(t, "fingerprint")
	caPEM, err := os.ReadFile(filepath.Join(certDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(caPEM)
	sum := sha256.Sum256(block.Bytes)
	want := strings.ToUpper(strings.Join(regexp.MustCompile("..").FindAllString(fmt.Sprintf("%x", sum), -1), ":"))
	if !strings.Contains(log, "fingerprint "+want) || !strings.Contains(log, certDir+"/ca.crt") {
		t.Errorf("the server did not print the CA's path and fingerprint %s:\n%s", want, log)
	}
	if fi, err := os.Stat(filepath.Join(certDir, "server-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server key: %v, mode %v", err, fi.Mode())
	}

	home := t.TempDir()
	authFile := filepath.Join(home, "auth.json")
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(skopeo, args...)
		cmd.Env = append(os.Environ(), "HOME="+home, "REGISTRY_AUTH_FILE="+authFile)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("wrong\n", "login", "--cert-dir", certDir, "-u", "alice", "--password-stdin", srv.addr); err == nil {
		t.Fatalf("skopeo login with a wrong password succeeded:\n%s", out)
	}
	if out, err := run("correct horse\n", "login", "--cert-dir", certDir, "-u", "alice", "--password-stdin", srv.addr); err != nil {
		t.Fatalf("skopeo login: %v\n%s\nregistry log:\n%s", err, out, srv.stderr())
	}
	if log := srv.stderr(); !strings.Contains(log, `msg="login failed" user=alice`) || strings.Contains(log, "wrong") {
		t.Errorf("the failed login is not logged, or its password is:\n%s", log)
	}

	// The source is a plain registry of the test's own.
	plain := startRegistry(t, t.TempDir(), "--access-log=false")
	img := pushRandom(t, plain.addr+"/src/app:1")
	copyImage := func(args ...string) {
		t.Helper()
		if out, err := run("", append([]string{"--insecure-policy", "copy", "--retry-times", "0"}, args...)...); err != nil {
			t.Fatalf("skopeo copy %v: %v\n%s\nregistry log:\n%s", args, err, out, srv.stderr())
		}
	}
	copyImage("--src-tls-verify=false", "--dest-cert-dir", certDir,
		"docker://"+plain.addr+"/src/app:1", "docker://"+srv.addr+"/secure/app:1")
	layout := filepath.Join(t.TempDir(), "layout")
	copyImage("--src-cert-dir", certDir, "docker://"+srv.addr+"/secure/app:1", "oci:"+layout+":1")
	copyImage("--preserve-digests", "--dest-cert-dir", certDir, "oci:"+layout+":1", "docker://"+srv.addr+"/secure/back:1")
	head := func(repo string) string {
		t.Helper()
		ref, err := name.ParseReference(srv.addr + "/" + repo + ":1")
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref, remote.WithAuth(&authn.Basic{Username: "alice", Password: "correct horse"}),
			remote.WithTransport(trustingTransport(t, caPEM)))
		if err != nil {
			t.Fatal(err)
		}
		return desc.Digest.String()
	}
	if got := head("secure/app"); got != digestOf(t, img) {
		t.Errorf("copy into the TLS registry changed the digest: %s -> %s", digestOf(t, img), got)
	}
	var index struct{ Manifests []struct{ Digest string } }
	raw, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil || json.Unmarshal(raw, &index) != nil || len(index.Manifests) != 1 {
		t.Fatalf("OCI layout index: %v %s", err, raw)
	}
	if got := head("secure/back"); got != index.Manifests[0].Digest {
		t.Errorf("copy out and back in changed the digest: %s -> %s", index.Manifests[0].Digest, got)
	}
	// Without credentials the registry serves nothing.
	resp, err := (&http.Client{Transport: trustingTransport(t, caPEM)}).Get("https://" + srv.addr + "/v2/secure/app/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous pull: %s, want 401", resp.Status)
	}
}

// trustingTransport trusts only caPEM.
func trustingTransport(t *testing.T, caPEM []byte) *http.Transport {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in ca.crt")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return tr
}
