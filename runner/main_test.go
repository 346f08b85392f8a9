package runner_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgtool/imgtool/runner"
)

func TestMain(m *testing.M) {
	if runner.IsInit() {
		runner.Init()
	}
	os.Exit(m.Run())
}

// busybox is the static busybox the tests build their root filesystems
// from (Debian's busybox-static; scripts/deps.sh installs it).
const busybox = "/bin/busybox"

// newRootfs makes a minimal root filesystem: busybox and its applets,
// /etc/passwd and /etc/group with root and an unprivileged user.
func newRootfs(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(busybox); err != nil {
		t.Fatalf("%s is needed (apt-get install busybox-static): %v", busybox, err)
	}
	dir := t.TempDir()
	for _, d := range []string{"bin", "etc", "tmp", "data"} {
		must(t, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	must(t, os.Chmod(filepath.Join(dir, "tmp"), 0o1777))
	b, err := os.ReadFile(busybox)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755))
	for _, applet := range []string{"sh", "echo", "cat", "ls", "id", "env", "pwd", "sleep", "touch", "hostname", "true", "false", "kill", "mkdir", "grep", "wc", "test", "stat"} {
		must(t, os.Symlink("busybox", filepath.Join(dir, "bin", applet)))
	}
	must(t, os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\napp:x:1000:\nextra:x:2000:app\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "data/file"), []byte("from the image\n"), 0o644))
	return dir
}

type result struct {
	code           int
	err            error
	stdout, stderr string
}

func run(t *testing.T, s runner.Spec) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	if s.Env == nil {
		s.Env = []string{"PATH=/bin"}
	}
	code, err := runner.Run(ctx, s, runner.Stdio{Stdout: &out, Stderr: &errb})
	return result{code, err, out.String(), errb.String()}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sh(script string) []string { return []string{"sh", "-c", script} }
