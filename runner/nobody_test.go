package runner_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestAsNobody runs the whole suite again as uid 65534 when the tests run
// as root (as CI does), so the rootless paths (the caller alone mapped to
// root, overlay in a user namespace, setgroups denied) are taken for real.
func TestAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Logf("running as uid %d: the whole suite already takes the rootless paths", os.Geteuid())
		return
	}
	const id = 65534
	dir := t.TempDir()
	for p := dir; p != filepath.Clean(os.TempDir()) && p != "/"; p = filepath.Dir(p) {
		must(t, os.Chmod(p, 0o755))
	}
	// The test binary sits in go's 0700 work directory: copy it out.
	bin := filepath.Join(dir, "runner.test")
	src, err := os.Open(os.Args[0])
	must(t, err)
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	must(t, err)
	_, err = io.Copy(dst, src)
	must(t, err)
	must(t, dst.Close())
	work := filepath.Join(dir, "tmp")
	must(t, os.Mkdir(work, 0o755))
	must(t, os.Chown(work, id, id))

	cmd := exec.Command(bin, "-test.run", "^Test", "-test.skip", "^TestAsNobody$", "-test.count=1", "-test.v", "-test.timeout=5m")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "TMPDIR="+work, "HOME="+work)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if testing.Verbose() {
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Contains(line, "OUTCOME") || strings.HasPrefix(strings.TrimSpace(line), "---") {
				t.Log(line)
			}
		}
	}
	if err != nil {
		t.Errorf("the suite as uid %d failed (%v):\n%s", id, err, out.String())
	}
	if !strings.Contains(out.String(), "--- PASS: TestEphemeralRootfs") {
		t.Errorf("the suite as uid %d did not run:\n%s", id, out.String())
	}
}
