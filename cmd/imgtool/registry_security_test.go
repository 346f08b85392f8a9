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

// TestRegistryAnonymousReadAndReadOnly: with --anonymous-read anybody
// pulls and only users push; the same data served --read-only refuses
// pushes even from users, with the spec's UNSUPPORTED error.
func TestRegistryAnonymousReadAndReadOnly(t *testing.T) {
	c := newCLI(t)
	users := filepath.Join(c.root, "users")
	addUser(t, c, "ci", "s3cret", "--htpasswd", users)
	srv := startRegistry(t, c.root, "--htpasswd", users, "--anonymous-read")
	alice := remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"})
	img := pushRandom(t, srv.addr+"/open/app:1", alice)

	ref, _ := name.ParseReference(srv.addr + "/open/app:1")
	pulled, err := remote.Image(ref) // anonymous
	if err != nil {
		t.Fatalf("anonymous pull: %v", err)
	}
	if digestOf(t, pulled) != digestOf(t, img) {
		t.Error("anonymous pull got another image")
	}
	if _, body := get(t, http.MethodGet, "http://"+srv.addr+"/v2/open/app/tags/list", ""); !strings.Contains(body, `"1"`) {
		t.Errorf("anonymous tag list: %s", body)
	}
	other, _ := name.ParseReference(srv.addr + "/open/other:1")
	if err := remote.Write(other, img); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("anonymous push: %v, want UNAUTHORIZED", err)
	}
	resp, body := get(t, http.MethodDelete, "http://"+srv.addr+"/v2/open/app/manifests/1", "")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"code":"UNAUTHORIZED"`) ||
		resp.Header.Get("WWW-Authenticate") != `Basic realm="imgtool"` {
		t.Errorf("anonymous delete: %s %v %s", resp.Status, resp.Header, body)
	}
	srv.stop(t)

	ro := startRegistry(t, c.root, "--htpasswd", users, "--anonymous-read", "--read-only")
	ref, _ = name.ParseReference(ro.addr + "/open/app:1")
	if _, err := remote.Image(ref); err != nil {
		t.Fatalf("pull from the read-only registry: %v", err)
	}
	pushTo, _ := name.ParseReference(ro.addr + "/open/new:1")
	if err := remote.Write(pushTo, img, alice); err == nil || !strings.Contains(err.Error(), "UNSUPPORTED") {
		t.Errorf("push to a read-only registry: %v, want UNSUPPORTED", err)
	}
	resp, body = get(t, http.MethodDelete, "http://"+ro.addr+"/v2/open/app/manifests/1", "ci:s3cret")
	if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(body, `"code":"UNSUPPORTED"`) {
		t.Errorf("delete on a read-only registry: %s %s", resp.Status, body)
	}
	if _, err := remote.Image(ref); err != nil {
		t.Errorf("the refused delete deleted: %v", err)
	}
}

// TestRegistryHtpasswdChangesWhileServing adds and removes users with
// `imgtool registry user` while the server runs: each change counts from
// the next request, without a restart.
func TestRegistryHtpasswdChangesWhileServing(t *testing.T) {
	c := newCLI(t)
	addUser(t, c, "alice", "pw-alice")
	srv := startRegistry(t, c.root, "--htpasswd", filepath.Join(c.root, "registry-htpasswd"))
	base := "http://" + srv.addr + "/v2/"
	status := func(creds string) int {
		resp, _ := get(t, http.MethodGet, base, creds)
		return resp.StatusCode
	}
	if s := status("alice:pw-alice"); s != http.StatusOK {
		t.Fatalf("alice: %d", s)
	}
	if s := status("bob:pw-bob"); s != http.StatusUnauthorized {
		t.Fatalf("bob before being added: %d", s)
	}
	addUser(t, c, "bob", "pw-bob")
	if s := status("bob:pw-bob"); s != http.StatusOK {
		t.Errorf("bob after user add: %d\n%s", s, srv.stderr())
	}
	addUser(t, c, "alice", "new-alice") // a password change
	if s := status("alice:pw-alice"); s != http.StatusUnauthorized {
		t.Errorf("alice's old password after the change: %d", s)
	}
	if s := status("alice:new-alice"); s != http.StatusOK {
		t.Errorf("alice's new password: %d", s)
	}
	c.ok("registry", "user", "rm", "alice")
	if s := status("alice:new-alice"); s != http.StatusUnauthorized {
		t.Errorf("alice after user rm: %d", s)
	}
	if msg := c.fail(1, "registry", "user", "rm", "alice"); !strings.Contains(msg, "no such user") {
		t.Errorf("removing a missing user: %s", msg)
	}
	if msg := c.fail(2, "registry", "user", "add", "carol"); !strings.Contains(msg, "--password-stdin") {
		t.Errorf("user add without a terminal: %s", msg)
	}
	srv.waitLog(t, "htpasswd file reloaded")
}

// TestRegistryLoginFailuresThrottled: after --login-failures wrong
// passwords from one address, even the right one gets 429 with
// Retry-After, and the log names user and address but no password.
func TestRegistryLoginFailuresThrottled(t *testing.T) {
	c := newCLI(t)
	addUser(t, c, "alice", "right-password")
	srv := startRegistry(t, c.root, "--htpasswd", filepath.Join(c.root, "registry-htpasswd"),
		"--login-failures", "3", "--login-window", "1h", "--access-log=false")
	base := "http://" + srv.addr + "/v2/"
	for i := range 3 {
		if resp, _ := get(t, http.MethodGet, base, fmt.Sprintf("alice:guess-%d", i)); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %s", i, resp.Status)
		}
	}
	resp, body := get(t, http.MethodGet, base, "alice:right-password")
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, `"code":"TOOMANYREQUESTS"`) {
		t.Fatalf("after 3 failures: %s %s", resp.Status, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "1200" {
		t.Errorf("Retry-After %q, want 1200 (one try back every 20 minutes)", ra)
	}
	log := srv.waitLog(t, `msg="login failed" user=alice remote=127.0.0.1`)
	for i := 0; i < 100 && strings.Count(log, "login failed") < 3; i++ {
		time.Sleep(50 * time.Millisecond)
		log = srv.stderr()
	}
	if n := strings.Count(log, "login failed"); n != 3 || strings.Contains(log, "guess-") || strings.Contains(log, "right-password") {
		t.Errorf("want 3 failed logins logged without passwords:\n%s", log)
	}
}

// TestRegistryTokenAuthWithSkopeo runs the bearer-token flow with skopeo
// over TLS: login and push as a user, pull anonymously (an anonymous
// token, --anonymous-read), and an anonymous push refused.
func TestRegistryTokenAuthWithSkopeo(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatal("skopeo is not installed; run scripts/deps.sh (Debian package skopeo)")
	}
	c := newCLI(t)
	addUser(t, c, "alice", "pw")
	srv := startRegistry(t, c.root, "--tls-self-signed", "--htpasswd", filepath.Join(c.root, "registry-htpasswd"),
		"--token-auth", "--anonymous-read")
	certDir := filepath.Join(c.root, "registry-tls")
	if fi, err := os.Stat(filepath.Join(c.root, "registry-token.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token key: %v %v", err, fi.Mode())
	}
	home := t.TempDir()
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(skopeo, args...)
		cmd.Env = append(os.Environ(), "HOME="+home, "REGISTRY_AUTH_FILE="+filepath.Join(home, "auth.json"))
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	plain := startRegistry(t, t.TempDir(), "--access-log=false")
	img := pushRandom(t, plain.addr+"/src/app:1")
	if out, err := run("pw\n", "login", "--cert-dir", certDir, "-u", "alice", "--password-stdin", srv.addr); err != nil {
		t.Fatalf("skopeo login: %v\n%s\n%s", err, out, srv.stderr())
	}
	if out, err := run("", "--insecure-policy", "copy", "--retry-times", "0", "--src-tls-verify=false", "--dest-cert-dir", certDir,
		"docker://"+plain.addr+"/src/app:1", "docker://"+srv.addr+"/tok/app:1"); err != nil {
		t.Fatalf("skopeo copy with a token: %v\n%s\n%s", err, out, srv.stderr())
	}
	if out, err := run("", "logout", srv.addr); err != nil {
		t.Fatalf("skopeo logout: %v\n%s", err, out)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if out, err := run("", "--insecure-policy", "copy", "--retry-times", "0", "--src-cert-dir", certDir,
		"docker://"+srv.addr+"/tok/app:1", "dir:"+layout); err != nil {
		t.Fatalf("anonymous skopeo pull: %v\n%s\n%s", err, out, srv.stderr())
	}
	manifest, err := os.ReadFile(filepath.Join(layout, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if d := fmt.Sprintf("sha256:%x", sha256.Sum256(manifest)); d != digestOf(t, img) {
		t.Errorf("pulled manifest %s, pushed %s", d, digestOf(t, img))
	}
	if out, err := run("", "--insecure-policy", "copy", "--retry-times", "0", "--dest-cert-dir", certDir,
		"dir:"+layout, "docker://"+srv.addr+"/tok/anon:1"); err == nil {
		t.Errorf("anonymous push with a token succeeded:\n%s", out)
	}
	// go-containerregistry (crane, imgtool push) follows the flow too.
	caPEM, err := os.ReadFile(filepath.Join(certDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(srv.addr + "/tok/ggcr:1")
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "pw"}),
		remote.WithTransport(trustingTransport(t, caPEM))); err != nil {
		t.Fatalf("go-containerregistry push with a token: %v", err)
	}
	// The server logs a request once its answer is sent: the client may
	// read the answer before the line is written.
	for _, want := range []string{"path=\"/token?account=alice", "status=200", `path=/v2/tok/app/manifests/1 status=201`,
		`path=/v2/tok/ggcr/manifests/1 status=201`} {
		srv.waitLog(t, want)
	}
}
