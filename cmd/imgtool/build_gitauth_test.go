package main_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"io/fs"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/internal/testgit"
)

// privateGitServer serves the bare repositories under dir with git
// http-backend over TLS on 127.0.0.1, to requests whose Authorization is
// want; it returns its URL and the CA file that makes git trust it.
func privateGitServer(t *testing.T, dir, want string) (string, string) {
	t.Helper()
	backend := "/usr/lib/git-core/git-http-backend"
	if out, err := exec.Command("git", "--exec-path").Output(); err == nil {
		backend = filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	}
	git := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + dir, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="private"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		git.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(ca), 0o755)
	return srv.URL, ca
}

// TestBuildGitAuth: a private https repository, as the build context and
// as an ADD source, builds with the GIT_AUTH_TOKEN secret (env= or src=,
// for all hosts or for 127.0.0.1), as root and as uid 65534; without it
// or with a wrong one the build fails saying so. The token is never in
// git's argv, the output, the image or the store.
func TestBuildGitAuth(t *testing.T) {
	asRootAndNobody(t, testBuildGitAuth)
}

func testBuildGitAuth(t *testing.T, uid int) {
	c := newCLI(t)
	busyboxBase(t, c)
	random := make([]byte, 16)
	rand.Read(random)
	token := "ghs_" + hex.EncodeToString(random)
	header := "basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
	base := nobodyDir(t)
	served := filepath.Join(base, "served")
	url, ca := privateGitServer(t, served, header)

	// lib.git, which the Dockerfile ADDs, and app.git, the context.
	lib := writeContext(t, filepath.Join(base, "lib"), map[string]string{"libfile": "from the private lib\n"})
	testgit.Run(t, lib, "init", "-q", "-b", "main")
	testgit.Run(t, lib, "add", ".")
	testgit.Run(t, lib, "commit", "-q", "-m", "lib")
	testgit.Run(t, lib, "tag", "v1")
	app := writeContext(t, filepath.Join(base, "app"), map[string]string{
		"Dockerfile": "FROM base:1\nCOPY hello.txt /hello.txt\nADD " + url + "/lib.git#v1 /lib\n",
		"hello.txt":  "hello from the private app\n",
	})
	testgit.Run(t, app, "init", "-q", "-b", "main")
	testgit.Run(t, app, "add", ".")
	testgit.Run(t, app, "commit", "-q", "-m", "app")
	for _, r := range []string{"lib", "app"} {
		testgit.Run(t, base, "clone", "-q", "--bare", filepath.Join(base, r), filepath.Join(served, r+".git"))
	}

	// A git first on PATH that logs its arguments: imgtool must not put
	// the token there, where any user of the machine reads it.
	bin := filepath.Join(base, "bin")
	argv := filepath.Join(base, "git-argv.log")
	realGit, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	writeContext(t, bin, map[string]string{"git": "#!/bin/sh\necho \"$@\" >>" + argv + "\nexec " + realGit + " \"$@\"\n"})
	os.Chmod(filepath.Join(bin, "git"), 0o755)
	tokenFile := filepath.Join(base, "token.txt")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	wrongFile := filepath.Join(base, "wrong.txt")
	os.WriteFile(wrongFile, []byte("ghs_wrong"), 0o600)
	local := writeContext(t, filepath.Join(base, "local"), map[string]string{
		"Dockerfile": "FROM base:1\nADD " + url + "/lib.git#v1 /lib\n",
	})

	if uid != 0 {
		chownTree(t, filepath.Join(base, "bin"), uid)
		for _, p := range []string{tokenFile, wrongFile, local} {
			chownTree(t, p, uid)
		}
		os.WriteFile(argv, nil, 0o644)
		os.Chown(argv, uid, uid)
		chownTree(t, c.root, uid)
		c.uid = uid
		c.env = append(c.env, "HOME="+base)
	}
	c.env = append(c.env, "GIT_SSL_CAINFO="+ca, "PATH="+bin+":"+os.Getenv("PATH"), "CI_TOKEN="+token, "WRONG_TOKEN=ghs_wrong")
	outputs := &bytes.Buffer{}
	build := func(args ...string) result {
		t.Helper()
		r := c.run(nil, append([]string{"build", "--compression", "none"}, args...)...)
		outputs.WriteString(r.stdout + r.stderr)
		return r
	}

	// The context and its ADD, with the token for all hosts, from the
	// environment.
	oci := filepath.Join(base, "oci")
	os.MkdirAll(oci, 0o755)
	chownTree(t, oci, uid)
	if r := build("--secret", "id=GIT_AUTH_TOKEN,env=CI_TOKEN", "-t", "private:1", "-o", "type=oci,dest="+oci+"/app", url+"/app.git#main"); r.code != 0 {
		t.Fatalf("build of the private context: exit %d\n%s", r.code, r.stderr)
	}
	// ADD from a local context, with the token of 127.0.0.1, from a file.
	if r := build("--secret", "id=GIT_AUTH_TOKEN.127.0.0.1,src="+tokenFile, "-t", "private:2", local); r.code != 0 {
		t.Fatalf("build with ADD of the private repository: exit %d\n%s", r.code, r.stderr)
	}
	for ref, want := range map[string]map[string]string{
		"private:1": {"hello.txt": "hello from the private app\n", "lib/libfile": "from the private lib\n"},
		"private:2": {"lib/libfile": "from the private lib\n"},
	} {
		files := exportFiles(t, c, ref)
		for p, content := range want {
			if h := files[p]; h == nil || h.Linkname != content {
				t.Errorf("%s: %s is %+v, want %q", ref, p, h, content)
			}
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"context without a token", []string{url + "/app.git#main"}, "--secret id=GIT_AUTH_TOKEN"},
		{"ADD without a token", []string{local}, "--secret id=GIT_AUTH_TOKEN"},
		{"another host's token", []string{"--secret", "id=GIT_AUTH_TOKEN.git.example.com,src=" + tokenFile, local}, "--secret id=GIT_AUTH_TOKEN"},
		{"context with a wrong token", []string{"--secret", "id=GIT_AUTH_TOKEN,env=WRONG_TOKEN", url + "/app.git#main"}, "refused the credentials of secret GIT_AUTH_TOKEN"},
		{"ADD with a wrong token", []string{"--secret", "id=GIT_AUTH_TOKEN.127.0.0.1,src=" + wrongFile, local}, "refused the credentials of secret GIT_AUTH_TOKEN.127.0.0.1"},
	} {
		r := build(append([]string{"-t", "bad:1"}, tc.args...)...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if last := lines[len(lines)-1]; r.code != 1 || !strings.Contains(last, tc.want) || !strings.Contains(last, "401") && !strings.Contains(last, "could not read Username") {
			t.Errorf("%s: exit %d, %s; want %q", tc.name, r.code, last, tc.want)
		}
	}
	if _, ok := c.images()["bad:1"]; ok {
		t.Error("a failed build named an image")
	}

	// Nowhere: not in what imgtool printed, nor git's argv, nor the
	// store and its build cache, nor the exported image.
	secrets := []string{token, header, strings.TrimPrefix(header, "basic ")}
	for _, s := range secrets {
		if strings.Contains(outputs.String(), s) {
			t.Errorf("imgtool's output shows %q", s)
		}
	}
	logged, err := os.ReadFile(argv)
	if err != nil || !strings.Contains(string(logged), "ls-remote") {
		t.Fatalf("the git wrapper logged nothing (%v): was it used?", err)
	}
	for _, s := range secrets {
		if strings.Contains(string(logged), s) {
			t.Errorf("git's argv holds %q:\n%s", s, logged)
		}
	}
	found := false
	for _, dir := range []string{c.root, oci} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("read %s: %v", p, err)
				return nil
			}
			// The layers are not compressed: the grep sees their files.
			found = found || bytes.Contains(data, []byte("from the private lib"))
			for _, s := range secrets {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("%s holds %q", p, s)
				}
			}
			return nil
		})
	}
	if !found {
		t.Error("no file of the store holds the ADDed file: the search for the token saw nothing")
	}
}
