package unpack_test

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

// asEnv marks a test binary that TestAsNobody started.
const asEnv = "IMGTOOL_UNPACK_TEST_UID"

// TestAsNobody runs the corpus and the semantic cases again as uid 65534
// when the tests run as root (as CI does), so that the unprivileged paths
// (owners in the xattr, skipped device nodes, no CAP_DAC_OVERRIDE) are
// taken for real. It re-executes a copy of the test binary with dropped
// credentials.
func TestAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Logf("running as uid %d (%s=%q): the whole suite already takes the unprivileged paths", os.Geteuid(), asEnv, os.Getenv(asEnv))
		return
	}
	const id = 65534
	dir := t.TempDir()
	// t.TempDir and its parent are 0700: let uid 65534 through.
	for p := dir; p != filepath.Clean(os.TempDir()) && p != "/"; p = filepath.Dir(p) {
		must(t, os.Chmod(p, 0o755))
	}
	// The test binary sits in go's 0700 work directory: copy it out.
	bin := filepath.Join(dir, "unpack.test")
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

	cmd := exec.Command(bin, "-test.run", "^(TestHostile|TestHostileWalk|TestWalkMatchesOpenat2|TestSemantics|TestCompressions|TestCache.*|TestClone|TestAsNobody)$",
		"-test.count=1", "-test.v", "-test.timeout=5m")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), asEnv+"=65534", "TMPDIR="+work, "HOME="+work)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var failed []string
	for _, line := range strings.Split(out.String(), "\n") {
		outcome := strings.Contains(line, "OUTCOME")
		if outcome && testing.Verbose() {
			t.Log(line)
		}
		if !outcome && (strings.Contains(line, "--- FAIL") || strings.Contains(line, "_test.go:")) {
			failed = append(failed, line)
		}
	}
	if err != nil {
		if len(failed) == 0 {
			failed = strings.Split(out.String(), "\n")
		}
		t.Errorf("the suite as uid %d failed (%v):\n%s", id, err, strings.Join(failed, "\n"))
	}
	for _, name := range []string{"TestHostile/", "TestHostileWalk/", "TestCacheParentUnchanged", "TestCacheKilledBuild", "TestClone"} {
		if !strings.Contains(out.String(), "--- PASS: "+name) && !strings.Contains(out.String(), "--- FAIL: "+name) {
			t.Errorf("the suite as uid %d did not run %s:\n%s", id, name, out.String())
		}
	}
}
