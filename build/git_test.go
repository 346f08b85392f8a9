package build

import (
	"context"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/internal/testgit"
)

// testRepos are bare repositories under one directory, as a git server
// serves them: repo.git (tag v1, then main one commit later, with
// lib.git as a submodule at lib) and lib.git.
type testRepos struct {
	dir          string
	v1, main     string // commits
	lib          string // lib.git's commit
	work, libDir string // the working copies, to commit more
}

func makeRepos(t *testing.T) *testRepos {
	t.Helper()
	r := &testRepos{dir: t.TempDir()}
	base := t.TempDir()
	r.libDir = filepath.Join(base, "lib")
	os.MkdirAll(r.libDir, 0o755)
	testgit.Run(t, r.libDir, "init", "-q", "-b", "main")
	mustWrite(t, filepath.Join(r.libDir, "libfile"), "from the submodule\n")
	testgit.Run(t, r.libDir, "add", ".")
	testgit.Run(t, r.libDir, "commit", "-q", "-m", "lib")
	r.lib = testgit.Run(t, r.libDir, "rev-parse", "HEAD")
	testgit.Run(t, base, "clone", "-q", "--bare", r.libDir, filepath.Join(r.dir, "lib.git"))

	r.work = filepath.Join(base, "repo")
	os.MkdirAll(r.work, 0o755)
	testgit.Run(t, r.work, "init", "-q", "-b", "main")
	mustWrite(t, filepath.Join(r.work, "README"), "version 1\n")
	mustWrite(t, filepath.Join(r.work, "bin/tool.sh"), "#!/bin/sh\necho tool\n")
	os.Chmod(filepath.Join(r.work, "bin/tool.sh"), 0o755)
	mustWrite(t, filepath.Join(r.work, "app/Dockerfile"), "FROM base:1\nCOPY . /app/\n")
	mustWrite(t, filepath.Join(r.work, "app/hello.txt"), "hello from app\n")
	os.Symlink("/etc/shadow", filepath.Join(r.work, "escape"))
	mustWrite(t, filepath.Join(r.work, ".gitmodules"), "[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib.git\n")
	testgit.Run(t, r.work, "add", ".")
	testgit.Run(t, r.work, "update-index", "--add", "--cacheinfo", "160000,"+r.lib+",lib")
	testgit.Run(t, r.work, "commit", "-q", "-m", "one")
	testgit.Run(t, r.work, "tag", "-a", "-m", "release 1", "v1")
	r.v1 = testgit.Run(t, r.work, "rev-parse", "HEAD")
	r.main = r.commit(t, "version 2\n")
	testgit.Run(t, base, "clone", "-q", "--bare", r.work, filepath.Join(r.dir, "repo.git"))
	return r
}

// commit changes README in the working copy, commits and returns the
// commit (push it with push).
func (r *testRepos) commit(t *testing.T, readme string) string {
	t.Helper()
	mustWrite(t, filepath.Join(r.work, "README"), readme)
	testgit.Run(t, r.work, "commit", "-q", "-am", readme)
	return testgit.Run(t, r.work, "rev-parse", "HEAD")
}

func (r *testRepos) push(t *testing.T) {
	t.Helper()
	testgit.Run(t, r.work, "push", "-q", filepath.Join(r.dir, "repo.git"), "main")
}

// serveSmartHTTP serves the repositories through git http-backend (git's
// smart HTTP), as a CGI under net/http/cgi, on 127.0.0.1.
func serveSmartHTTP(t *testing.T, dir string) string {
	t.Helper()
	backend := "/usr/lib/git-core/git-http-backend"
	if out, err := exec.Command("git", "--exec-path").Output(); err == nil {
		backend = filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	}
	h := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + dir, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// serveDumbHTTP serves the repositories as plain files: git's dumb HTTP,
// which cannot fetch shallow.
func serveDumbHTTP(t *testing.T, dir string) string {
	t.Helper()
	for _, repo := range []string{"repo.git", "lib.git"} {
		testgit.Run(t, filepath.Join(dir, repo), "update-server-info")
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestParseGitSource(t *testing.T) {
	for _, tc := range []struct {
		in                  string
		bareGitHub, local   bool
		ok                  bool
		remote, ref, sub    string
		checksum, keep, bad string
	}{
		{in: "https://example.com/org/repo.git#v1.2:docker/app", ok: true, remote: "https://example.com/org/repo.git", ref: "v1.2", sub: "docker/app"},
		{in: "https://example.com/org/repo.git", ok: true, remote: "https://example.com/org/repo.git"},
		{in: "https://example.com/org/repo.git#:sub/../../x", ok: true, remote: "https://example.com/org/repo.git", sub: "x"},
		{in: "https://example.com/org/repo.git?ref=main&subdir=a&checksum=abc123&keep-git-dir=1", ok: true, remote: "https://example.com/org/repo.git", ref: "main", sub: "a", checksum: "abc123", keep: "true"},
		{in: "https://example.com/org/repo.git?tag=v1", ok: true, remote: "https://example.com/org/repo.git", ref: "refs/tags/v1"},
		{in: "git@example.com:org/repo.git#main", ok: true, remote: "git@example.com:org/repo.git", ref: "main"},
		{in: "ssh://git@example.com:2222/org/repo.git", ok: true, remote: "ssh://git@example.com:2222/org/repo.git"},
		{in: "git://127.0.0.1:9418/repo.git#refs/pull/1/head", ok: true, remote: "git://127.0.0.1:9418/repo.git", ref: "refs/pull/1/head"},
		{in: "https://example.com/file.tar.gz"},
		{in: "app.tar.gz"},
		{in: "./repo.git"},
		{in: "github.com/org/repo"},
		{in: "github.com/org/repo#main", bareGitHub: true, ok: true, remote: "https://github.com/org/repo", ref: "main"},
		{in: "file:///srv/repo.git#v1:sub"},
		{in: "file:///srv/repo.git#v1:sub", local: true, ok: true, remote: "file:///srv/repo.git", ref: "v1", sub: "sub"},
		{in: "file://host/srv/repo.git", local: true, ok: true, bad: "want file:///PATH"},
		{in: "ext::sh -c touch% /tmp/pwned", ok: false},
		{in: "https://example.com/org/repo.git?unknown=1", ok: true, bad: "unexpected query"},
		{in: "https://user:hunter2@example.com/org/repo.git?fetch-by-commit=1", ok: true, bad: "fetch-by-commit"},
	} {
		g, ok, err := ParseGitSource(tc.in, tc.bareGitHub, tc.local)
		if ok != tc.ok || (err != nil) != (tc.bad != "") || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%s: ok %v, %v; want ok %v, error %q", tc.in, ok, err, tc.ok, tc.bad)
			continue
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", tc.in, err)
		}
		if !ok || err != nil {
			continue
		}
		keep := ""
		if g.KeepGitDir {
			keep = "true"
		}
		if g.Remote != tc.remote || g.Ref != tc.ref || g.Subdir != tc.sub || g.Checksum != tc.checksum || keep != tc.keep || !g.Submodules {
			t.Errorf("%s: %+v", tc.in, g)
		}
	}
}

// TestAddGit: ADD of a git repository over git's smart HTTP, git://
// and dumb HTTP: the ref's files (submodule included, modes as git has
// them, no .git unless --keep-git-dir), a subdirectory, --checksum; the
// step is CACHED while the ref names the same commit and runs again when
// it moves; bad refs, checksums and servers fail clearly and leave the
// store as it was.
func TestAddGit(t *testing.T) {
	repos := makeRepos(t)
	smart := serveSmartHTTP(t, repos.dir) + "/repo.git"
	daemon := testgit.Daemon(t, repos.dir, nil) + "/repo.git"
	dumb := serveDumbHTTP(t, repos.dir) + "/repo.git"
	s := baseStore(t)
	cache := t.TempDir()
	df := "FROM base:1\n" +
		"ADD " + smart + "#v1 /v1\n" +
		"ADD --keep-git-dir=true " + daemon + " /kept/\n" +
		"ADD " + daemon + "#main:app /app\n" +
		"ADD --checksum=" + repos.main + " " + dumb + "#main /dumb\n"
	res, ran, out := cachedBuild(t, s, cache, t.TempDir(), df, nil)
	if len(ran) != 4 {
		t.Errorf("ran %v\n%s", ran, out)
	}
	v1 := layerFiles(t, s, res, 1)
	if f := v1["v1/README"]; f.data != "version 1\n" || f.hdr.Mode != 0o644 || f.hdr.Uid != 0 {
		t.Errorf("v1/README: %+v %q", f.hdr, f.data)
	}
	if f := v1["v1/bin/tool.sh"]; f.hdr == nil || f.hdr.Mode != 0o755 {
		t.Errorf("v1/bin/tool.sh: %+v", f.hdr)
	}
	if f := v1["v1/lib/libfile"]; f.data != "from the submodule\n" {
		t.Errorf("submodule file: %q", f.data)
	}
	if f := v1["v1/escape"]; f.hdr == nil || f.hdr.Linkname != "/etc/shadow" {
		t.Errorf("a symlink of the repository: %+v", f.hdr)
	}
	for name := range v1 {
		if strings.Contains(name, ".git/") || strings.HasSuffix(name, ".git") {
			t.Errorf("ADD without --keep-git-dir wrote %s", name)
		}
	}
	kept := layerFiles(t, s, res, 2)
	if f := kept["kept/README"]; f.data != "version 2\n" {
		t.Errorf("the remote's HEAD: %q", f.data)
	}
	if _, ok := kept["kept/.git/HEAD"]; !ok {
		t.Errorf("--keep-git-dir=true: no .git/HEAD in %v", keys(kept))
	}
	app := layerFiles(t, s, res, 3)
	if f := app["app/hello.txt"]; f.data != "hello from app\n" || len(app) != 3 { // app, Dockerfile, hello.txt
		t.Errorf("the subdirectory: %v", keys(app))
	}
	if f := layerFiles(t, s, res, 4)["dumb/README"]; f.data != "version 2\n" {
		t.Errorf("over dumb HTTP: %q", f.data)
	}

	// Same commits: every step CACHED, the same image.
	again, ran, out := cachedBuild(t, s, cache, t.TempDir(), df, nil)
	if len(ran) != 0 || again.Manifest.Digest != res.Manifest.Digest {
		t.Errorf("rebuild ran %v, %s (first %s)\n%s", ran, again.Manifest.Digest, res.Manifest.Digest, out)
	}
	// main moves: the steps that follow it run again.
	repos.commit(t, "version 3\n")
	repos.push(t)
	moved := "FROM base:1\nADD " + smart + "#v1 /v1\nADD " + daemon + "#main /main\n"
	if _, ran, out := cachedBuild(t, s, cache, t.TempDir(), moved, nil); len(ran) != 1 || !strings.Contains(ran[0], "#main /main") {
		t.Errorf("after main moved, ran %v, want its ADD alone\n%s", ran, out)
	}
	res3, ran, _ := cachedBuild(t, s, cache, t.TempDir(), moved, nil)
	if len(ran) != 0 {
		t.Errorf("rebuild after the move ran %v", ran)
	}
	if f := layerFiles(t, s, res3, 2)["main/README"]; f.data != "version 3\n" {
		t.Errorf("after main moved: %q", f.data)
	}

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + closed.Addr().String() + "/repo.git"
	closed.Close()
	before := storeState(t, s)
	for _, tc := range []struct{ add, want string }{
		{smart + "#nope /x", `no branch or tag "nope"`},
		{daemon + "#main:missing /x", "missing is not a directory"},
		{"--checksum=" + repos.v1 + " " + smart + "#main /x", "not the checksum " + repos.v1},
		{"--checksum=xyz " + smart + " /x", `checksum "xyz" is not a commit id`},
		{gone + " /x", "git ls-remote"},
		{"https://user:hunter2@" + closed.Addr().String() + "/repo.git /x", "git ls-remote"},
	} {
		_, out, err := testBuild(t, s, t.TempDir(), "FROM base:1\nADD "+tc.add+"\n", nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ADD %s: %v, want %q\n%s", tc.add, err, tc.want, out)
		}
		// The instruction, as the Dockerfile has it, names the step; git's
		// message must not repeat the password.
		if err != nil && strings.Count(err.Error(), "hunter2") > 1 {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	if after := storeState(t, s); after != before {
		t.Errorf("failed ADDs changed the store:\n%s\nthen\n%s", before, after)
	}
}

// TestGitCommitMTime: ?mtime=commit gives every file the commit's time.
func TestGitCommitMTime(t *testing.T) {
	repos := makeRepos(t)
	g, _, err := ParseGitSource(serveSmartHTTP(t, repos.dir)+"/repo.git?tag=v1&mtime=commit&submodules=false", false, false)
	if err != nil {
		t.Fatal(err)
	}
	dir, commit, err := g.Checkout(context.Background(), filepath.Join(t.TempDir(), "repo"))
	if err != nil || commit != repos.v1 {
		t.Fatalf("checkout: %s %v", commit, err)
	}
	want := time.Date(2021, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range []string{"README", "bin/tool.sh", "app"} {
		if fi, err := os.Lstat(filepath.Join(dir, p)); err != nil || !fi.ModTime().Equal(want) {
			t.Errorf("%s: %v %v", p, fi.ModTime(), err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "lib")); len(entries) != 0 {
		t.Errorf("submodules=false checked lib out: %v", entries)
	}
}

// TestGitMissing: without the git command, a git source says what to
// install.
func TestGitMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	g, ok, err := ParseGitSource("https://127.0.0.1:1/repo.git#main", false, false)
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, _, err := g.Checkout(context.Background(), filepath.Join(t.TempDir(), "repo")); err == nil || !strings.Contains(err.Error(), "apt-get install git") {
		t.Errorf("without git: %v", err)
	}
}

// TestAddGitIsolated: ADD runs git without the user's configuration
// (here a URL rewrite, as credential helpers are configured too), which
// the build context, named by the user, does use.
func TestAddGitIsolated(t *testing.T) {
	repos := makeRepos(t)
	smart := serveSmartHTTP(t, repos.dir)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := "http://" + closed.Addr().String()
	closed.Close()
	home := t.TempDir()
	mustWrite(t, filepath.Join(home, ".gitconfig"), "[url \""+smart+"/\"]\n\tinsteadOf = "+nowhere+"/\n")
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", home)

	g, _, err := ParseGitSource(nowhere+"/repo.git#main", true, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, commit, err := g.Checkout(context.Background(), filepath.Join(t.TempDir(), "repo")); err != nil || commit != repos.main {
		t.Errorf("a context through the user's url.insteadOf: %s %v", commit, err)
	}
	s := baseStore(t)
	_, _, err = testBuild(t, s, t.TempDir(), "FROM base:1\nADD "+nowhere+"/repo.git#main /src\n", nil)
	if err == nil || !strings.Contains(err.Error(), "git ls-remote") {
		t.Errorf("ADD went through the user's git config: %v", err)
	}
}
