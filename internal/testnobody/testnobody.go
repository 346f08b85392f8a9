// Package testnobody owns re-running a package's test binary as uid
// 65534, which the packages whose rootless paths differ from root's
// (runner, unpack) do when their tests run as root, as CI does, so that
// those paths are taken for real rather than skipped.
package testnobody

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// UID is the unprivileged user the tests run as.
const UID = 65534

// Run runs a copy of the running test binary as UID with args (the
// -test.* flags that pick the tests), in a working directory of its own
// that is also its TMPDIR and HOME, with env added to the environment, and
// returns its combined output and how it ended. The caller must be root.
func Run(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	// t.TempDir and its parent are 0700: let UID through.
	for p := dir; p != filepath.Clean(os.TempDir()) && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary sits in go's 0700 work directory: copy it out.
	bin := filepath.Join(dir, filepath.Base(os.Args[0]))
	if err := copyExe(os.Args[0], bin); err != nil {
		t.Fatalf("copy the test binary for uid %d: %v", UID, err)
	}
	work := filepath.Join(dir, "tmp")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(work, UID, UID); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = work
	cmd.Env = append(append(os.Environ(), env...), "TMPDIR="+work, "HOME="+work)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: UID, Gid: UID, Groups: []uint32{}}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func copyExe(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
