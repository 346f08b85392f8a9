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

// nobody is the unprivileged user CI (which runs as root) drops to.
const nobody = 65534

// TestUnprivilegedUser runs pull, images, save and prune as an unprivileged
// user, as CI pipelines do: nothing in the store or the transfers may need
// root.
func TestUnprivilegedUser(t *testing.T) {
	reg := newRegistry(t, nil)
	want := digestOf(t, pushRandom(t, reg+"/u/app:1"))
	home := t.TempDir()
	uid := os.Getuid()
	if uid == 0 {
		uid = nobody
		// The binary's directory and the home must be reachable by nobody.
		for _, p := range []string{filepath.Dir(binary), home, filepath.Dir(home)} {
			if err := os.Chmod(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(home, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
		if os.Getuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("imgtool %s as uid %d: %v\n%s", strings.Join(args, " "), uid, err, errb.String())
		}
		return out.String()
	}
	if got := strings.TrimSpace(run("pull", reg+"/u/app:1")); got != want {
		t.Fatalf("pull as uid %d printed %q, want %s", uid, got, want)
	}
	if out := run("images"); !strings.Contains(out, reg+"/u/app") {
		t.Errorf("images as uid %d:\n%s", uid, out)
	}
	// The default root follows XDG: ~/.local/share/imgtool.
	if _, err := os.Stat(filepath.Join(home, ".local", "share", "imgtool", "store", "index.json")); err != nil {
		t.Errorf("store not at the XDG default: %v", err)
	}
	run("save", "-o", filepath.Join(home, "app.tar"), reg+"/u/app:1")
	fi, err := os.Stat(filepath.Join(home, "app.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
		t.Errorf("archive owned by uid %d, want %d", st.Uid, uid)
	}
	// prune reaches the unpack cache too, which an unprivileged user keeps
	// in its rootless tree.
	if out := run("prune"); !strings.Contains(out, "Unpack cache: reclaimed") {
		t.Errorf("prune as uid %d:\n%s", uid, out)
	}
	if _, err := os.Stat(filepath.Join(home, ".local", "share", "imgtool", "cache", "unpack", "rootless", "chains")); err != nil {
		t.Errorf("prune as uid %d made no rootless cache tree: %v", uid, err)
	}
}
