package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/internal/testgit"
)

// TestBuildGit: imgtool build takes a git repository as its context
// (git:// and file://, a subdirectory, -f inside it), whose Dockerfile
// ADDs another ref of a repository and extracts an xz tarball, as root
// and as uid 65534; both transports give the same image; a bad ref, an
// unreachable server or a -f that leads out of the repository fail
// clearly and change nothing.
func TestBuildGit(t *testing.T) {
	asRootAndNobody(t, testBuildGit)
}

func testBuildGit(t *testing.T, uid int) {
	c := newCLI(t)
	busyboxBase(t, c)
	base := nobodyDir(t)
	served := filepath.Join(base, "served")
	work := filepath.Join(base, "work")
	daemon := testgit.Daemon(t, served, func(cmd *exec.Cmd) {
		// git serves only repositories its user owns.
		asUser(cmd, uid)
		cmd.Env = append(os.Environ(), "HOME="+served)
	})
	writeContext(t, work, map[string]string{
		"README": "tagged\n",
		"app/Dockerfile": "FROM base:1\nCOPY hello.txt /hello.txt\n" +
			"ADD " + daemon + "/repo.git#v1 /src\nADD bundle.tar.xz /opt/\n",
		"app/alt.Dockerfile":  "FROM base:1\nCOPY hello.txt /alt.txt\n",
		"app/hello.txt":       "hello from git\n",
		"app/.dockerignore":   "ignored.txt\n",
		"app/ignored.txt":     "never\n",
		"app/bundle/pkg/file": "from the xz tarball\n",
	})
	if out, err := exec.Command("tar", "-C", filepath.Join(work, "app/bundle"), "-cJf", filepath.Join(work, "app/bundle.tar.xz"), "pkg").CombinedOutput(); err != nil {
		t.Fatalf("tar -J (the tests need xz-utils): %v\n%s", err, out)
	}
	os.RemoveAll(filepath.Join(work, "app/bundle"))
	testgit.Run(t, work, "init", "-q", "-b", "main")
	testgit.Run(t, work, "add", ".")
	testgit.Run(t, work, "commit", "-q", "-m", "one")
	testgit.Run(t, work, "tag", "v1")
	writeContext(t, work, map[string]string{"README": "main\n"})
	testgit.Run(t, work, "commit", "-q", "-am", "two")
	testgit.Run(t, base, "clone", "-q", "--bare", work, filepath.Join(served, "repo.git"))

	chownTree(t, base, uid)
	if uid != 0 {
		chownTree(t, c.root, uid)
		c.uid = uid
		c.env = append(c.env, "HOME="+base)
	}
	c.env = append(c.env, "SOURCE_DATE_EPOCH=1700000000")
	before := c.images()
	overDaemon := strings.TrimSpace(c.ok("build", "-t", "git:1", daemon+"/repo.git#main:app"))
	fromFile := strings.TrimSpace(c.ok("build", "-t", "git:2", "file://"+filepath.Join(served, "repo.git")+"#main:app"))
	if overDaemon != fromFile {
		t.Errorf("git:// gave %s, file:// %s", overDaemon, fromFile)
	}
	c.ok("build", "-t", "git:alt", "-f", "alt.Dockerfile", "file://"+filepath.Join(served, "repo.git")+"#main:app")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{daemon + "/repo.git#nope"}, `no branch or tag "nope"`},
		{[]string{daemon + "/missing.git"}, "git ls-remote"},
		{[]string{"-f", "../../../../../../../../etc/hostname", daemon + "/repo.git#main:app"}, "read Dockerfile"},
		{[]string{daemon + "/repo.git#main:nowhere"}, "nowhere is not a directory"},
	} {
		if line := c.fail(1, append([]string{"build", "-t", "bad:1"}, tc.args...)...); !strings.Contains(line, tc.want) {
			t.Errorf("build %v: %s, want %q", tc.args, line, tc.want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(c.root, "tmp")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
	if after := c.images(); len(after) != len(before)+3 {
		t.Errorf("images after the builds: %v", after)
	}

	// Read as root: the export's temporary directory is the test's.
	c.uid = 0
	files := exportFiles(t, c, "git:1")
	for p, want := range map[string]string{
		"hello.txt":         "hello from git\n",
		"src/README":        "tagged\n",
		"opt/pkg/file":      "from the xz tarball\n",
		"src/app/hello.txt": "hello from git\n",
	} {
		if h := files[p]; h == nil || h.Linkname != want {
			t.Errorf("%s: %+v, want %q", p, h, want)
		}
	}
	if _, ok := files["src/.git"]; ok {
		t.Error("ADD of a git repository kept .git")
	}
	if h := exportFiles(t, c, "git:alt")["alt.txt"]; h == nil {
		t.Error("-f alt.Dockerfile inside the git context was not used")
	}
}

// asRootAndNobody runs test as root and as uid 65534 (the unprivileged
// path CI must cover), each in a subtest; the suite runs as root.
func asRootAndNobody(t *testing.T, test func(t *testing.T, uid int)) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("needs root to build as root and as uid 65534: run the suite as root (CI does: sudo make test)")
	}
	t.Run("root", func(t *testing.T) { test(t, 0) })
	t.Run("uid 65534", func(t *testing.T) { test(t, nobody) })
}
