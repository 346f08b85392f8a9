package main_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// runIdentities are the callers `imgtool run` is tested as: the test's
// own user (root in CI) and uid 65534, the unprivileged CI user.
func runIdentities(t *testing.T) map[string]*cli {
	out := map[string]*cli{"self": newCLI(t)}
	if os.Geteuid() == 0 {
		nb := newCLI(t)
		nb.uid = nobody
		openUp(t, nb.root)
		must(t, os.Chown(nb.root, nobody, nobody))
		out["nobody"] = nb
	}
	return out
}

// openUp lets uid 65534 reach p through its 0700 test directories.
func openUp(t *testing.T, p string) {
	t.Helper()
	for ; p != filepath.Clean(os.TempDir()) && p != "/"; p = filepath.Dir(p) {
		must(t, os.Chmod(p, 0o755))
	}
	must(t, os.Chmod(filepath.Dir(binary), 0o755))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// importBusybox makes a busybox image in c's store from the host's
// static busybox (Debian's busybox-static).
func importBusybox(t *testing.T, c *cli, ref string, changes ...string) {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatalf("/bin/busybox is needed (apt-get install busybox-static): %v", err)
	}
	dir := t.TempDir()
	openUp(t, dir)
	for _, d := range []string{"bin", "etc", "tmp", "data"} {
		must(t, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	b, err := os.ReadFile("/bin/busybox")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755))
	for _, a := range []string{"sh", "echo", "cat", "ls", "id", "env", "pwd", "sleep", "touch", "true", "grep", "kill", "hostname", "tty", "stty", "tr"} {
		must(t, os.Symlink("busybox", filepath.Join(dir, "bin", a)))
	}
	must(t, os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\napp:x:1000:\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "data/file"), []byte("image\n"), 0o644))
	args := []string{"import", dir, "-t", ref}
	for _, ch := range changes {
		args = append(args, "-c", ch)
	}
	c.ok(args...)
}

func TestRun(t *testing.T) {
	ids := runIdentities(t)
	// The copy path taken where overlay is refused in a user namespace.
	copyPath := newCLI(t)
	copyPath.env = append(copyPath.env, "IMGTOOL_NO_OVERLAY=1")
	ids["copy"] = copyPath
	for who, c := range ids {
		t.Run(who, func(t *testing.T) {
			c.t = t
			importBusybox(t, c, "bb:1", `ENTRYPOINT ["sh", "-c"]`, `CMD ["echo default"]`, "ENV FOO=image BAR=image", "WORKDIR /work")
			if got := c.ok("run", "bb:1"); got != "default\n" {
				t.Errorf("entrypoint+cmd: got %q", got)
			}
			if got := c.ok("run", "bb:1", `echo "$FOO $BAR $(pwd)"`); got != "image image /work\n" {
				t.Errorf("image env and workdir: got %q", got)
			}
			envFile := filepath.Join(t.TempDir(), "env")
			must(t, os.WriteFile(envFile, []byte("# comment\nBAR=file\nFROMFILE=yes\n"), 0o644))
			openUp(t, envFile)
			c.env = append(c.env, "HOSTVAR=from-host")
			got := c.ok("run", "-e", "FOO=cli", "-e", "HOSTVAR", "--env-file", envFile, "-w", "/new/dir", "bb:1", `echo "$FOO $BAR $FROMFILE $HOSTVAR $(pwd)"`)
			if got != "cli file yes from-host /new/dir\n" {
				t.Errorf("-e, --env-file, -w: got %q", got)
			}
			if got := c.ok("run", "--entrypoint", "echo", "bb:1", "a", "b"); got != "a b\n" {
				t.Errorf("--entrypoint: got %q", got)
			}
			if r := c.run(nil, "run", "bb:1", "exit 42"); r.code != 42 {
				t.Errorf("exit status: got %d, want 42 (%s)", r.code, r.stderr)
			}
			r := c.run(nil, "run", "--entrypoint", "", "bb:1", "no-such-cmd")
			if r.code != 127 || !strings.Contains(r.stderr, `"no-such-cmd": executable file not found in $PATH`) {
				t.Errorf("missing command: exit %d, stderr %q", r.code, r.stderr)
			}
			// PID 1 is the init; the host's processes are invisible; /proc is
			// there. The shell counts the pids itself: ls | grep races.
			got = c.ok("run", "bb:1", `cat /proc/1/cmdline | tr '\0' ' '; set -- /proc/[0-9]*; echo $#`)
			if f := strings.Fields(got); len(f) != 2 || f[0] != "imgtool-runner-init" || f[1] != "2" {
				t.Errorf("pid namespace: got %q", got)
			}
			// Writes never reach the image: the next run sees the original.
			c.ok("run", "bb:1", "echo changed > /data/file; rm /bin/true")
			if got := c.ok("run", "bb:1", "cat /data/file; ls /bin/true"); got != "image\n/bin/true\n" {
				t.Errorf("a run's writes leaked into the image: %q", got)
			}
			if got := c.ok("run", "--network", "none", "bb:1", "ls /sys/class/net"); got != "lo\n" {
				t.Errorf("--network none: got %q", got)
			}
			if r := c.run(nil, "run", "--read-only", "bb:1", "touch /data/x"); r.code == 0 {
				t.Error("--read-only: the root filesystem was writable")
			}
		})
	}
}

func TestRunBinds(t *testing.T) {
	for who, c := range runIdentities(t) {
		t.Run(who, func(t *testing.T) {
			c.t = t
			importBusybox(t, c, "bb:1")
			conf, out := t.TempDir(), t.TempDir()
			openUp(t, conf)
			openUp(t, out)
			must(t, os.Chmod(out, 0o777))
			must(t, os.WriteFile(filepath.Join(conf, "app.conf"), []byte("v=1\n"), 0o644))
			got := c.ok("run", "-v", conf+":/conf:ro", "-v", out+":/out", "--tmpfs", "/scratch", "bb:1",
				"sh", "-c", "cat /conf/app.conf; touch /conf/x 2>/dev/null || echo ro; echo hi > /out/f; touch /scratch/t && echo tmpfs")
			if got != "v=1\nro\ntmpfs\n" {
				t.Errorf("binds: got %q", got)
			}
			if _, err := os.Stat(filepath.Join(conf, "x")); err == nil {
				t.Error("a :ro bind was written")
			}
			if b, _ := os.ReadFile(filepath.Join(out, "f")); string(b) != "hi\n" {
				t.Errorf("rw bind: got %q", b)
			}
			// Bad specs fail before anything runs, as usage errors.
			for _, bad := range [][]string{
				{"-v", "/no/such/dir:/x"}, {"-v", "relative:/x"}, {"-v", conf + ":/x:bogus"},
				{"--network", "bridge"}, {"-w", "relative"}, {"--tmpfs", "/t:size=1m"},
			} {
				msg := c.fail(2, append(append([]string{"run"}, bad...), "bb:1", "true")...)
				t.Logf("OUTCOME %v: %s", bad, msg)
			}
		})
	}
}

// TestRunSignal checks that SIGTERM sent to imgtool reaches the command.
func TestRunSignal(t *testing.T) {
	for who, c := range runIdentities(t) {
		t.Run(who, func(t *testing.T) {
			c.t = t
			importBusybox(t, c, "bb:1")
			cmd := exec.Command(binary, "--root", c.root, "run", "bb:1", "sh", "-c",
				`trap 'echo got TERM; exit 3' TERM; echo ready; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done`)
			if c.uid != 0 && os.Geteuid() == 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.uid)}}
			}
			stdout, err := cmd.StdoutPipe()
			must(t, err)
			must(t, cmd.Start())
			buf := make([]byte, 6)
			if _, err := stdout.Read(buf); err != nil || string(buf) != "ready\n" {
				t.Fatalf("read %q, %v", buf, err)
			}
			time.Sleep(100 * time.Millisecond)
			must(t, cmd.Process.Signal(syscall.SIGTERM))
			rest := make([]byte, 64)
			n, _ := stdout.Read(rest)
			err = cmd.Wait()
			ee, _ := err.(*exec.ExitError)
			if string(rest[:n]) != "got TERM\n" || ee == nil || ee.ExitCode() != 3 {
				t.Errorf("got %q and %v; want the trap's output and exit status 3", rest[:n], err)
			}
		})
	}
}

// TestRunPullsMissing: an image not in the store is pulled first, as
// docker run does.
func TestRunPullsMissing(t *testing.T) {
	reg := newRegistry(t, nil)
	src := newCLI(t)
	importBusybox(t, src, "bb:1")
	src.ok("push", "bb:1", reg+"/r/bb:1")
	c := newCLI(t)
	r := c.run(nil, "run", reg+"/r/bb:1", "echo", "pulled")
	if r.code != 0 || r.stdout != "pulled\n" || !strings.Contains(r.stderr, "locally") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if rows := c.images(); len(rows) != 1 {
		t.Errorf("the image was not kept in the store: %v", rows)
	}
	c.fail(1, "run", reg+"/r/missing:1", "true")
}

// TestRunTTY runs -it under a pseudo-terminal as a user at a terminal
// would: the container gets its own terminal of the same size.
func TestRunTTY(t *testing.T) {
	c := newCLI(t)
	importBusybox(t, c, "bb:1")
	ptmx, tty, err := pty.Open()
	must(t, err)
	defer ptmx.Close()
	must(t, pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 100}))
	cmd := exec.Command(binary, "--root", c.root, "run", "-it", "bb:1", "sh", "-c", "tty; stty size; read line; echo got $line")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	must(t, cmd.Start())
	tty.Close()
	_, err = ptmx.Write([]byte("typed\r"))
	must(t, err)
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(ptmx) // ends with EIO when imgtool exits
		done <- b
	}()
	must(t, cmd.Wait())
	var out string
	select {
	case b := <-done:
		out = strings.ReplaceAll(string(b), "\r", "")
	case <-time.After(10 * time.Second):
		t.Fatal("no output")
	}
	if !strings.Contains(out, "/dev/pts/0\n") || !strings.Contains(out, "30 100\n") || !strings.Contains(out, "got typed\n") {
		t.Errorf("got %q; want the container's own pts, the caller's size and the typed line", out)
	}
}

// TestRunInsideUserNamespace runs imgtool as root of a user namespace
// that maps only one id, as in an unprivileged CI container: it must map
// what it has rather than the whole range.
func TestRunInsideUserNamespace(t *testing.T) {
	c := newCLI(t)
	if os.Geteuid() == 0 {
		c.uid = nobody
		openUp(t, c.root)
		must(t, os.Chown(c.root, nobody, nobody))
	}
	importBusybox(t, c, "bb:1")
	cmd := exec.Command("unshare", "--user", "--map-root-user", binary, "--root", c.root, "run", "bb:1", "sh", "-c", "id -u; cat /proc/self/uid_map")
	if c.uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	}
	out, err := cmd.CombinedOutput()
	if f := strings.Fields(string(out)); err != nil || len(f) != 4 || f[0] != "0" || f[3] != "1" {
		t.Fatalf("got %q, %v; want uid 0 with a one-id map", out, err)
	}
}

// TestRunSubordinateIDs gives uid 65534 a subordinate range (in a private
// mount namespace, over the host's /etc/subuid and /etc/subgid) so that
// imgtool maps it through newuidmap and other users exist inside.
func TestRunSubordinateIDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to stand in /etc/subuid for uid 65534: run the suite as root (CI does: sudo make test)")
	}
	if _, err := exec.LookPath("newuidmap"); err != nil {
		t.Fatalf("newuidmap is needed (apt-get install uidmap): %v", err)
	}
	c := newCLI(t)
	c.uid = nobody
	openUp(t, c.root)
	must(t, os.Chown(c.root, nobody, nobody))
	importBusybox(t, c, "bb:1")
	sub := filepath.Join(t.TempDir(), "subid")
	must(t, os.WriteFile(sub, []byte("nobody:200000:65536\n"), 0o644))
	script := `mount --bind "$1" /etc/subuid && mount --bind "$1" /etc/subgid &&
		exec setpriv --reuid 65534 --regid 65534 --clear-groups "$2" --root "$3" run -u app bb:1 sh -c 'id -u; id -g; cat /proc/self/uid_map'`
	out, err := exec.Command("unshare", "--mount", "sh", "-c", script, "sh", sub, binary, c.root).CombinedOutput()
	f := strings.Fields(string(out))
	if err != nil || len(f) != 8 || f[0] != "1000" || f[1] != "1000" || f[3] != "65534" || f[6] != "200000" {
		t.Fatalf("got %q, %v; want uid 1000 through a map of 0->65534 and 1->200000", out, err)
	}
}
