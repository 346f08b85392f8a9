package build

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// authServer serves the repositories under dir through git http-backend
// to requests that carry want as their Authorization header, and
// records every Authorization header it sees.
type authServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func (s *authServer) saw() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func gitBackend(dir string) http.Handler {
	backend := "/usr/lib/git-core/git-http-backend"
	if out, err := exec.Command("git", "--exec-path").Output(); err == nil {
		backend = filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	}
	return &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + dir, "GIT_HTTP_EXPORT_ALL=1"}}
}

func newAuthServer(want string, next http.Handler, tls bool) *authServer {
	s := &authServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		s.mu.Lock()
		s.seen = append(s.seen, got)
		s.mu.Unlock()
		if want != "" && got != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "who are you?", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
	if tls {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	return s
}

// trustServers makes git trust the test servers' certificates, through
// git's own GIT_SSL_CAINFO, which ADD's isolated git keeps.
func trustServers(t *testing.T, servers ...*httptest.Server) {
	t.Helper()
	var b strings.Builder
	for _, s := range servers {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	mustWrite(t, ca, b.String())
	t.Setenv("GIT_SSL_CAINFO", ca)
}

// TestAddGitAuth: ADD of a private https repository takes the
// GIT_AUTH_TOKEN secret, sent to that host only (its submodule on the
// same host too), never over plain http, never after a redirect; a
// wrong or missing token fails saying so, without showing the token.
func TestAddGitAuth(t *testing.T) {
	const token = "ghp_s3cretT0kenForTheTest"
	want := "basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
	repos := makeRepos(t)
	private := newAuthServer(want, gitBackend(repos.dir), true)
	defer private.Close()
	// git sends the header of the first URL to where it was redirected,
	// once the redirected request succeeded without it: public answers
	// everyone.
	public := newAuthServer("", gitBackend(repos.dir), true)
	defer public.Close()
	redirect := newAuthServer("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, public.URL+r.URL.String(), http.StatusMovedPermanently)
	}), true)
	defer redirect.Close()
	plain := newAuthServer("", gitBackend(repos.dir), false)
	defer plain.Close()
	trustServers(t, private.Server, redirect.Server, public.Server)

	secrets := t.TempDir()
	mustWrite(t, filepath.Join(secrets, "token"), token+"\n")
	mustWrite(t, filepath.Join(secrets, "wrong"), "not-"+token)
	with := func(ids map[string]string) func(*Request) {
		return func(r *Request) {
			r.Secrets = map[string]string{}
			for id, f := range ids {
				r.Secrets[id] = filepath.Join(secrets, f)
			}
		}
	}
	host := strings.TrimPrefix(private.URL, "https://")

	s := baseStore(t)
	df := "FROM base:1\nADD " + private.URL + "/repo.git#v1 /src\n"
	res, out, err := testBuild(t, s, t.TempDir(), df, with(map[string]string{"GIT_AUTH_TOKEN." + host: "token"}))
	if err != nil {
		t.Fatalf("ADD with GIT_AUTH_TOKEN.%s: %v\n%s", host, err, out)
	}
	files := layerFiles(t, s, res, -1)
	if f := files["src/README"]; f.data != "version 1\n" {
		t.Errorf("src/README: %q", f.data)
	}
	if f := files["src/lib/libfile"]; f.data != "from the submodule\n" {
		t.Errorf("the submodule on the same host: %q", f.data)
	}
	for _, e := range files {
		if strings.Contains(e.data, token) || strings.Contains(e.hdr.Linkname, token) {
			t.Errorf("%s holds the token", e.hdr.Name)
		}
	}
	if strings.Contains(out, token) {
		t.Errorf("the progress shows the token:\n%s", out)
	}

	for _, tc := range []struct {
		name, df string
		ids      map[string]string
		want     string
	}{
		{"no token", df, nil, "--secret id=GIT_AUTH_TOKEN"},
		{"a wrong token", df, map[string]string{"GIT_AUTH_TOKEN": "wrong"}, "refused the credentials of secret GIT_AUTH_TOKEN"},
		{"another host's token", df, map[string]string{"GIT_AUTH_TOKEN.git.example.com": "token"}, "--secret id=GIT_AUTH_TOKEN"},
		{"a redirect", "FROM base:1\nADD " + redirect.URL + "/repo.git#v1 /src\n", map[string]string{"GIT_AUTH_TOKEN": "token"}, "follows no redirect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, out, err := testBuild(t, s, t.TempDir(), tc.df, with(tc.ids))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %q\n%s", err, tc.want, out)
			}
			if strings.Contains(err.Error(), token) || strings.Contains(out, token) {
				t.Errorf("the error shows the token: %v\n%s", err, out)
			}
		})
	}
	for _, h := range redirect.saw() {
		if h != want {
			t.Errorf("the redirecting server got %q, want the token", h)
		}
	}
	if len(redirect.saw()) == 0 {
		t.Error("the redirecting server saw no request")
	}
	for _, h := range public.saw() {
		if h != "" {
			t.Errorf("the server redirected to got Authorization %q", h)
		}
	}

	// Plain http: the token is not sent, and the build says so.
	_, out, err = testBuild(t, s, t.TempDir(), "FROM base:1\nADD "+plain.URL+"/repo.git#v1 /src\n", with(map[string]string{"GIT_AUTH_TOKEN": "token"}))
	if err != nil {
		t.Fatalf("ADD over plain http: %v\n%s", err, out)
	}
	if !strings.Contains(out, "secret GIT_AUTH_TOKEN is not sent to "+plain.URL) {
		t.Errorf("no warning that the token stayed home:\n%s", out)
	}
	for _, h := range plain.saw() {
		if h != "" {
			t.Errorf("plain http got Authorization %q", h)
		}
	}
}

// TestGitContextAuth: a git build context takes the secrets too, with
// the user's own git environment (here GIT_CONFIG_COUNT settings, which
// stay).
func TestGitContextAuth(t *testing.T) {
	const token = "glpat-an0therT0ken"
	want := "bearer " + token
	repos := makeRepos(t)
	private := newAuthServer(want, gitBackend(repos.dir), true)
	defer private.Close()
	trustServers(t, private.Server)
	t.Setenv("GIT_CONFIG_COUNT", "1")
	t.Setenv("GIT_CONFIG_KEY_0", "url."+private.URL+"/.insteadOf")
	t.Setenv("GIT_CONFIG_VALUE_0", "https://git.invalid/")

	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "header"), want)
	g, _, err := ParseGitSource("https://git.invalid/repo.git#main:app", true, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Checkout(context.Background(), filepath.Join(t.TempDir(), "repo")); err == nil || !strings.Contains(err.Error(), "needs credentials") {
		t.Errorf("without the header: %v", err)
	}
	g, err = g.WithSecrets(map[string]string{"GIT_AUTH_HEADER.git.invalid": filepath.Join(dir, "header")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The secret is the URL's host's; git's insteadOf leads elsewhere, to
	// which the header must not go.
	if _, _, err := g.Checkout(context.Background(), filepath.Join(t.TempDir(), "repo")); err == nil || !strings.Contains(err.Error(), "could not read Username for '"+private.URL) {
		t.Errorf("the header of git.invalid, through insteadOf: %v", err)
	}
	for _, h := range private.saw() {
		if h != "" {
			t.Errorf("the header of git.invalid went to %s: %q", private.URL, h)
		}
	}
	g, _, _ = ParseGitSource(private.URL+"/repo.git#main:app", true, true)
	g, err = g.WithSecrets(map[string]string{"GIT_AUTH_HEADER": filepath.Join(dir, "header")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	root, commit, err := g.Checkout(context.Background(), filepath.Join(t.TempDir(), "repo"))
	if err != nil || commit != repos.main {
		t.Fatalf("with GIT_AUTH_HEADER: %s %v", commit, err)
	}
	if data, err := os.ReadFile(filepath.Join(root, "hello.txt")); err != nil || string(data) != "hello from app\n" {
		t.Errorf("app/hello.txt: %q %v", data, err)
	}
	if _, err := g.WithSecrets(map[string]string{"GIT_AUTH_HEADER": filepath.Join(dir, "missing")}, nil); err == nil {
		t.Error("a secret file that is gone: no error")
	}
}

// TestAddGitEnvConfig: ADD's git ignores configuration its caller's
// environment gives (git -c's GIT_CONFIG_PARAMETERS, GIT_CONFIG_COUNT),
// as it ignores ~/.gitconfig: CI sets credentials that way too.
func TestAddGitEnvConfig(t *testing.T) {
	repos := makeRepos(t)
	smart := newAuthServer("", gitBackend(repos.dir), false)
	defer smart.Close()
	const nowhere = "http://git.invalid"
	s := baseStore(t)
	for name, env := range map[string][][2]string{
		"GIT_CONFIG_COUNT":      {{"GIT_CONFIG_COUNT", "1"}, {"GIT_CONFIG_KEY_0", "url." + smart.URL + "/.insteadOf"}, {"GIT_CONFIG_VALUE_0", nowhere + "/"}},
		"GIT_CONFIG_PARAMETERS": {{"GIT_CONFIG_PARAMETERS", "'url." + smart.URL + "/.insteadof'='" + nowhere + "/'"}},
	} {
		t.Run(name, func(t *testing.T) {
			for _, kv := range env {
				t.Setenv(kv[0], kv[1])
			}
			g, _, _ := ParseGitSource(nowhere+"/repo.git#main", true, true)
			if _, commit, err := g.Checkout(context.Background(), filepath.Join(t.TempDir(), "repo")); err != nil || commit != repos.main {
				t.Fatalf("the test's configuration does not work for a context: %s %v", commit, err)
			}
			_, _, err := testBuild(t, s, t.TempDir(), "FROM base:1\nADD "+nowhere+"/repo.git#main /src\n", nil)
			if err == nil || !strings.Contains(err.Error(), "git ls-remote") {
				t.Errorf("ADD used the environment's git configuration: %v", err)
			}
		})
	}
}
