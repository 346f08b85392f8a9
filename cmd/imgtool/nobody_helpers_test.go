package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobodyDir returns a new temporary directory that uid 65534 can reach,
// and makes the binary under test reachable too: t.TempDir's parents are
// private to root.
func nobodyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{dir, filepath.Dir(dir), filepath.Dir(binary)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// buildAsNobody runs `imgtool build --no-cache -t tag dir` as uid 65534
// on c's store, chowned to it first, with HOME=home and env, and returns
// the digest it printed and its log. --no-cache because the steps must
// run as uid 65534, not come from root's build of the same context.
func buildAsNobody(t *testing.T, c *cli, home, tag, dir string, env ...string) (digest, log string) {
	t.Helper()
	chownTree(t, c.root, nobody)
	cmd := exec.Command(binary, "--root", c.root, "--progress", "plain", "build", "--no-cache", "-t", tag, dir)
	cmd.Env = append([]string{"HOME=" + home, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build as uid %d: %v\n%s", nobody, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), stderr.String()
}
