package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func diffIDs(t *testing.T, c *cli, ref string) string {
	t.Helper()
	var in struct {
		Config struct {
			RootFS struct {
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
		}
	}
	if err := json.Unmarshal([]byte(c.ok("inspect", ref)), &in); err != nil {
		t.Fatal(err)
	}
	return strings.Join(in.Config.RootFS.DiffIDs, ",")
}

// TestUnpackRoundTrip: import, unpack (as root and as an unprivileged user,
// who gets owners recorded in xattrs), and import again: the layer is the
// same, owners included.
func TestUnpackRoundTrip(t *testing.T) {
	src := rootfs(t, false)
	if os.Getuid() == 0 {
		os.Chown(filepath.Join(src, "etc", "passwd"), 1000, 1001)
	}
	c := newCLI(t)
	c.env = append(c.env, "SOURCE_DATE_EPOCH=1700000000")
	c.ok("import", src, "-t", "rt:1")
	want := diffIDs(t, c, "rt:1")

	dest := filepath.Join(t.TempDir(), "rootfs")
	c.ok("unpack", "rt:1", dest)
	c.ok("import", dest, "-t", "rt:2")
	if got := diffIDs(t, c, "rt:2"); got != want {
		t.Errorf("unpack then import changed the layer: %s, want %s", got, want)
	}
	c.fail(1, "unpack", "rt:1", dest) // exists

	// The same as uid 65534 with --rootless semantics forced by the lack
	// of privilege.
	if os.Getuid() == 0 {
		base := t.TempDir()
		for _, p := range []string{base, filepath.Dir(base), c.root, filepath.Join(c.root, "store")} {
			os.Chmod(p, 0o755)
		}
		chownTree(t, c.root, nobody)
		os.Chown(base, nobody, nobody)
		udest := filepath.Join(base, "rootfs")
		run := func(args ...string) {
			t.Helper()
			cmd := exec.Command(binary, append([]string{"--root", c.root, "--progress", "quiet"}, args...)...)
			cmd.Env = []string{"HOME=" + base, "SOURCE_DATE_EPOCH=1700000000"}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("imgtool %s as uid %d: %v\n%s", strings.Join(args, " "), nobody, err, out)
			}
		}
		run("unpack", "rt:1", udest)
		var st syscall.Stat_t
		syscall.Lstat(filepath.Join(udest, "etc", "passwd"), &st)
		if st.Uid != nobody {
			t.Errorf("rootless unpack: file owned by %d, want the caller", st.Uid)
		}
		run("import", udest, "-t", "rt:3")
		if got := diffIDs(t, c, "rt:3"); got != want {
			t.Errorf("rootless unpack then import lost the owners: %s, want %s", got, want)
		}
	}
}

func chownTree(t *testing.T, dir string, uid int) {
	t.Helper()
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, uid, uid)
		}
		return nil
	})
}
