package main_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="imgtool-test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestLoginPullLogout(t *testing.T) {
	reg := newRegistry(t, basicAuth("ci", "s3cret"))
	want := digestOf(t, pushRandom(t, reg+"/private/app:1", remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"})))
	c := newCLI(t)
	home, cfgDir := t.TempDir(), t.TempDir()
	c.env = []string{"HOME=" + home, "DOCKER_CONFIG=" + cfgDir}

	if line := c.fail(1, "pull", reg+"/private/app:1"); !strings.Contains(line, "imgtool login "+reg) {
		t.Errorf("anonymous pull of a private image: %q does not say to log in", line)
	}
	if r := c.run(strings.NewReader("wrong\n"), "login", "-u", "ci", "--password-stdin", reg); r.code != 1 || !strings.Contains(r.stderr, "credentials rejected") {
		t.Errorf("login with a wrong password: exit %d, %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(cfgDir, "config.json")); err == nil {
		t.Error("a rejected login wrote config.json")
	}
	if r := c.run(strings.NewReader("s3cret\n"), "login", "-u", "ci", "--password-stdin", reg); r.code != 0 || !strings.Contains(r.stdout, "Login Succeeded") {
		t.Fatalf("login: exit %d, %s", r.code, r.stderr)
	}
	cfg, err := os.ReadFile(filepath.Join(cfgDir, "config.json"))
	if err != nil || !strings.Contains(string(cfg), reg) || strings.Contains(string(cfg), "s3cret") {
		t.Errorf("config.json after login (want an auth entry, no clear password): %s, %v", cfg, err)
	}
	if got := strings.TrimSpace(c.ok("pull", reg+"/private/app:1")); got != want {
		t.Errorf("authenticated pull: %q, want %s", got, want)
	}
	c.ok("push", reg+"/private/app:1", reg+"/private/copy:1")
	c.ok("logout", reg)
	c.fail(1, "pull", reg+"/private/copy:1")
	c.fail(1, "logout", reg)
}
