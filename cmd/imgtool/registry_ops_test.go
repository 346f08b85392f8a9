package main_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/bcrypt"
)

// TestRegistryHealthAndMetrics: /healthz checks the storage (and says 503
// when the data directory is gone), /metrics counts requests, on the API
// address by default or on --metrics-addr.
func TestRegistryHealthAndMetrics(t *testing.T) {
	root := t.TempDir()
	srv := startRegistry(t, root, "--access-log=false")
	pushRandom(t, srv.addr+"/m/app:1")
	resp, body := get(t, http.MethodGet, "http://"+srv.addr+"/healthz", "")
	if resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz: %s %q", resp.Status, body)
	}
	resp, body = get(t, http.MethodGet, "http://"+srv.addr+"/metrics", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	for _, want := range []string{
		`imgtool_registry_http_requests_total{code="201",method="PUT",route="manifest"} 1`,
		`imgtool_registry_http_requests_total{code="200",method="GET",route="healthz"} 1`,
		`imgtool_registry_uploads_completed_total`,
		`imgtool_registry_http_request_bytes_total{route="upload"}`,
		`imgtool_registry_gc_runs_total{result="ok"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Storage that fails: the data directory replaced by a file.
	data := filepath.Join(root, "registry")
	if err := os.Rename(data, data+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, body = get(t, http.MethodGet, "http://"+srv.addr+"/healthz", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "storage driver filesystem") {
		t.Errorf("/healthz over broken storage: %s %q", resp.Status, body)
	}
	if resp, _ := get(t, http.MethodGet, "http://"+srv.addr+"/v2/", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("/v2/ liveness: %s", resp.Status)
	}

	// On their own address: unauthenticated there, behind the login on the API.
	c := newCLI(t)
	addUser(t, c, "alice", "pw")
	sec := startRegistry(t, c.root, "--htpasswd", filepath.Join(c.root, "registry-htpasswd"), "--metrics-addr", "127.0.0.1:0")
	m := regexp.MustCompile(`metrics and health on http://([0-9.:]+)/metrics`).FindStringSubmatch(sec.waitLog(t, "metrics and health on"))
	if m == nil {
		t.Fatalf("no metrics address printed:\n%s", sec.stderr())
	}
	if resp, _ := get(t, http.MethodGet, "http://"+sec.addr+"/metrics", "alice:pw"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the API address with --metrics-addr: %s", resp.Status)
	}
	get(t, http.MethodGet, "http://"+sec.addr+"/v2/", "")
	if resp, body := get(t, http.MethodGet, "http://"+m[1]+"/metrics", ""); resp.StatusCode != http.StatusOK ||
		!strings.Contains(body, `imgtool_registry_http_requests_total{code="401",method="GET",route="base"} 1`) {
		t.Errorf("/metrics on --metrics-addr: %s\n%s", resp.Status, body)
	}
	if resp, body := get(t, http.MethodGet, "http://"+m[1]+"/healthz", ""); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz on --metrics-addr: %s %q", resp.Status, body)
	}
}

// TestRegistryConfigFileServes starts the server from a --config file and
// checks its settings are in force; a flag on the command line wins over
// the file, and an unknown key stops the server before it starts.
func TestRegistryConfigFileServes(t *testing.T) {
	c := newCLI(t)
	users := filepath.Join(c.root, "users")
	addUser(t, c, "alice", "pw", "--htpasswd", users)
	cfg := filepath.Join(t.TempDir(), "registry.yaml")
	write := func(s string) {
		if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("# imgtool registry\naddr: 127.0.0.1:1\nhtpasswd: " + users + "\nanonymous-read: true\nread-only: true\nlogin:\n  failures: 2\n  window: 10m\n")
	srv := startRegistry(t, c.root, "--config", cfg) // --addr 127.0.0.1:0 on the command line wins
	if strings.HasSuffix(srv.addr, ":1") {
		t.Errorf("the config file's addr won over the command line's")
	}
	if resp, _ := get(t, http.MethodGet, "http://"+srv.addr+"/v2/", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/v2/ without credentials: %s", resp.Status)
	}
	if resp, _ := get(t, http.MethodGet, "http://"+srv.addr+"/v2/_catalog", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("anonymous catalog: %s", resp.Status)
	}
	if resp, _ := get(t, http.MethodPost, "http://"+srv.addr+"/v2/x/blobs/uploads/", "alice:pw"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("push to the read-only registry: %s", resp.Status)
	}
	get(t, http.MethodGet, "http://"+srv.addr+"/v2/", "alice:bad1")
	get(t, http.MethodGet, "http://"+srv.addr+"/v2/", "alice:bad2")
	if resp, _ := get(t, http.MethodGet, "http://"+srv.addr+"/v2/", "alice:pw"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("third login after 2 failures: %s", resp.Status)
	}

	write("addr: 127.0.0.1:0\nread_only: true\n")
	if msg := c.fail(2, "registry", "serve", "--config", cfg); !strings.Contains(msg, `line 2: unknown setting "read_only"`) {
		t.Errorf("unknown key: %s", msg)
	}
	write("grace: soon\n")
	if msg := c.fail(2, "registry", "serve", "--config", cfg); !strings.Contains(msg, `grace: "soon"`) {
		t.Errorf("bad duration: %s", msg)
	}
	c.fail(2, "registry", "serve", "--anonymous-read")
	c.fail(2, "registry", "serve", "--tls-cert", "/nonexistent.pem")
	if msg := c.fail(1, "registry", "serve", "--htpasswd", filepath.Join(c.root, "missing")); !strings.Contains(msg, "registry user add") {
		t.Errorf("missing htpasswd file: %s", msg)
	}
}

// TestRegistryUserAddPrompts types the password at a terminal, as a user
// would: asked twice, never echoed; two different entries change nothing.
func TestRegistryUserAddPrompts(t *testing.T) {
	c := newCLI(t)
	file := filepath.Join(c.root, "registry-htpasswd")
	for _, tc := range []struct {
		name, first, second string
		ok                  bool
	}{
		{"same twice", "typed-secret", "typed-secret", true},
		{"two different", "typed-secret", "other-secret", false},
	} {
		ptmx, tty, err := pty.Open()
		must(t, err)
		cmd := exec.Command(binary, "--root", c.root, "registry", "user", "add", "erin")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		must(t, cmd.Start())
		tty.Close()
		out := make(chan string, 64)
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := ptmx.Read(buf) // ends with EIO when imgtool exits
				if n > 0 {
					out <- string(buf[:n])
				}
				if err != nil {
					close(out)
					return
				}
			}
		}()
		var seen strings.Builder
		waitFor := func(s string) {
			t.Helper()
			deadline := time.After(10 * time.Second)
			for !strings.Contains(seen.String(), s) {
				select {
				case chunk, ok := <-out:
					if !ok {
						t.Fatalf("%s: imgtool ended before %q: %q", tc.name, s, seen.String())
					}
					seen.WriteString(chunk)
				case <-deadline:
					t.Fatalf("%s: no %q in %q", tc.name, s, seen.String())
				}
			}
		}
		waitFor("Password: ")
		ptmx.Write([]byte(tc.first + "\r"))
		waitFor("Repeat password: ")
		ptmx.Write([]byte(tc.second + "\r"))
		err = cmd.Wait()
		for chunk := range out {
			seen.WriteString(chunk)
		}
		ptmx.Close()
		if strings.Contains(seen.String(), "secret") {
			t.Errorf("%s: the password was echoed: %q", tc.name, seen.String())
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: exit %v\n%s", tc.name, err, seen.String())
			continue
		}
		data, _ := os.ReadFile(file)
		_, hash, _ := strings.Cut(strings.TrimSpace(string(data)), ":")
		if tc.ok && bcrypt.CompareHashAndPassword([]byte(hash), []byte("typed-secret")) != nil {
			t.Errorf("%s: the file does not hold the typed password: %q", tc.name, data)
		}
		if !tc.ok && !strings.Contains(seen.String(), "the passwords differ") {
			t.Errorf("%s: %q", tc.name, seen.String())
		}
	}
}
