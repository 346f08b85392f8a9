package runner_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgtool/imgtool/runner"
)

func TestExitStatusAndOutput(t *testing.T) {
	dir := newRootfs(t)
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
	}{
		{"echo", []string{"echo", "hello", "world"}, 0, "hello world\n"},
		{"exit 42", sh("exit 42"), 42, ""},
		{"killed by SIGKILL", sh("kill -9 $$"), 128 + 9, ""},
		{"killed by SIGTERM", sh("kill -TERM $$"), 128 + 15, ""},
		{"stderr is separate", sh("echo out; echo err >&2"), 0, "out\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, runner.Spec{Dir: dir, Args: c.args})
			if r.err != nil || r.code != c.code || r.stdout != c.stdout {
				t.Fatalf("got code %d, err %v, stdout %q, stderr %q; want code %d, stdout %q", r.code, r.err, r.stdout, r.stderr, c.code, c.stdout)
			}
		})
	}
}

func TestCommandNotFound(t *testing.T) {
	dir := newRootfs(t)
	for _, args := range [][]string{{"no-such-command"}, {"/bin/no-such-command"}} {
		r := run(t, runner.Spec{Dir: dir, Args: args})
		if r.code != runner.NotFoundExit || !errors.Is(r.err, runner.ErrExec) || !strings.Contains(r.err.Error(), args[0]) {
			t.Errorf("%v: got code %d, err %v; want %d and an error naming the command", args, r.code, r.err, runner.NotFoundExit)
		}
	}
	r := run(t, runner.Spec{Dir: dir, Args: []string{"no-such-command"}})
	if !strings.Contains(r.err.Error(), "executable file not found in $PATH") {
		t.Errorf("got %v, want docker's wording", r.err)
	}
}

func TestEnvWorkdirHostname(t *testing.T) {
	dir := newRootfs(t)
	r := run(t, runner.Spec{
		Dir: dir, Args: sh(`echo "$FOO|$HOME|$HOSTNAME|$(pwd)|$(hostname)"`),
		Env: []string{"PATH=/bin", "FOO=bar baz"}, Cwd: "/new/work dir", Hostname: "box",
	})
	if want := "bar baz|/root|box|/new/work dir|box\n"; r.err != nil || r.stdout != want {
		t.Fatalf("got %q (err %v, stderr %q), want %q", r.stdout, r.err, r.stderr, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("the working directory reached the image's directory: %v", err)
	}
	// Without PATH the command is still found (docker's default PATH).
	r = run(t, runner.Spec{Dir: dir, Args: []string{"sh", "-c", "echo $PATH"}, Env: []string{}})
	if r.err != nil || !strings.Contains(r.stdout, "/usr/local/sbin:") {
		t.Fatalf("default PATH: got %q, %v", r.stdout, r.err)
	}
}

func TestPIDNamespace(t *testing.T) {
	dir := newRootfs(t)
	// The shell counts /proc's pid directories itself (a pipeline such
	// as ls | grep races: ls may list /proc before grep is forked).
	r := run(t, runner.Spec{Dir: dir, Args: sh(`echo $$; cat /proc/1/cmdline | tr '\0' ' '; echo; set -- /proc/[0-9]*; echo $#`)})
	if r.err != nil {
		t.Fatal(r.err, r.stderr)
	}
	out := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(out) != 3 || out[0] == "1" || !strings.HasPrefix(out[1], "imgtool-runner-init") {
		t.Fatalf("want the command under the init as pid 1, got %q", r.stdout)
	}
	// The init and the shell; no host process.
	if out[2] != "2" {
		t.Errorf("the container sees %s processes: host processes leak in", out[2])
	}
}

func TestEphemeralRootfs(t *testing.T) {
	dir := newRootfs(t)
	r := run(t, runner.Spec{Dir: dir, Args: sh("echo changed > /data/file && rm /bin/true && touch /new && cat /data/file")})
	if r.err != nil || r.code != 0 || r.stdout != "changed\n" {
		t.Fatalf("got %d %v %q %q", r.code, r.err, r.stdout, r.stderr)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "data/file"))
	if string(b) != "from the image\n" {
		t.Errorf("a write inside the container reached the image: %q", b)
	}
	for _, p := range []string{"bin/true", "etc/hosts", "proc", "dev"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); (p == "bin/true") != (err == nil) {
			t.Errorf("%s: the container's changes or mount points reached the image (%v)", p, err)
		}
	}
	// The next run sees none of it.
	r = run(t, runner.Spec{Dir: dir, Args: sh("cat /data/file; ls /new")})
	if r.stdout != "from the image\n" || r.code == 0 {
		t.Errorf("state leaked between runs: %q, code %d", r.stdout, r.code)
	}
}

func TestWritableRootfs(t *testing.T) {
	dir := newRootfs(t)
	r := run(t, runner.Spec{Dir: dir, Rootfs: runner.Writable, Args: sh("echo built > /data/out && cat /etc/hostname >/dev/null && ls /proc/self >/dev/null")})
	if r.err != nil || r.code != 0 {
		t.Fatalf("got %d %v %q", r.code, r.err, r.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "data/out")); string(b) != "built\n" {
		t.Errorf("the write did not stay: %q", b)
	}
	// Mount points the runner had to create are gone again.
	for _, p := range []string{"proc", "dev", "sys", "etc/hosts", "etc/hostname", "etc/resolv.conf"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("mount point /%s was left in the writable rootfs", p)
		}
	}
}

func TestReadOnlyRootfs(t *testing.T) {
	dir := newRootfs(t)
	r := run(t, runner.Spec{Dir: dir, ReadOnly: true, Args: sh("touch /data/x 2>/dev/null && echo wrote; echo ok > /dev/shm/y && cat /dev/shm/y")})
	if r.err != nil || r.stdout != "ok\n" {
		t.Fatalf("got %q %v %q: / must be read-only, /dev/shm writable", r.stdout, r.err, r.stderr)
	}
}

func TestBindMounts(t *testing.T) {
	dir := newRootfs(t)
	host := t.TempDir()
	must(t, os.WriteFile(filepath.Join(host, "conf"), []byte("v=1\n"), 0o644))
	must(t, os.Chmod(host, 0o777))
	rw := t.TempDir()
	must(t, os.Chmod(rw, 0o777))
	r := run(t, runner.Spec{Dir: dir, Args: sh("cat /conf/conf; touch /conf/x 2>/dev/null && echo wrote-ro; echo hi > /out/f; echo t > /scratch/t && cat /scratch/t"),
		Mounts: []runner.Mount{{Source: host, Target: "/conf", ReadOnly: true}, {Source: rw, Target: "/out"}, {Target: "/scratch", Tmpfs: true}}})
	if r.err != nil || r.stdout != "v=1\nt\n" {
		t.Fatalf("got %q %v %q", r.stdout, r.err, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(host, "x")); err == nil {
		t.Error("a :ro bind was written")
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "f")); string(b) != "hi\n" {
		t.Errorf("a rw bind was not written: %q", b)
	}
}

func TestNetworkNone(t *testing.T) {
	dir := newRootfs(t)
	r := run(t, runner.Spec{Dir: dir, Network: runner.NetworkNone, Args: sh("ls /sys/class/net; grep -c : /proc/net/dev")})
	if r.err != nil || r.stdout != "lo\n1\n" {
		t.Fatalf("want only lo, got %q %v %q", r.stdout, r.err, r.stderr)
	}
}

func TestSignalForwarded(t *testing.T) {
	dir := newRootfs(t)
	sigs := make(chan os.Signal, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		sigs <- syscall.SIGTERM
	}()
	r := run(t, runner.Spec{Dir: dir, Signals: sigs, Args: sh(`trap 'echo got TERM; exit 3' TERM; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; echo timeout`)})
	if r.err != nil || r.code != 3 || r.stdout != "got TERM\n" {
		t.Fatalf("got %d %v %q", r.code, r.err, r.stdout)
	}
}

func TestOrphansReaped(t *testing.T) {
	dir := newRootfs(t)
	// Each inner shell exits at once, leaving its background child to the
	// init; once those end they must not stay as zombies.
	r := run(t, runner.Spec{Dir: dir, Args: sh(`for i in 1 2 3 4 5; do sh -c 'sleep 0.05 &'; done; sleep 0.5; cat /proc/[0-9]*/stat 2>/dev/null | grep -c ') Z ' || true`)})
	if r.err != nil || strings.TrimSpace(r.stdout) != "0" {
		t.Fatalf("zombies: %q %v %q", r.stdout, r.err, r.stderr)
	}
}

func TestBadSpec(t *testing.T) {
	dir := newRootfs(t)
	cases := map[string]runner.Spec{
		"missing rootfs":  {Dir: filepath.Join(dir, "nope"), Args: []string{"true"}},
		"no command":      {Dir: dir},
		"relative cwd":    {Dir: dir, Args: []string{"true"}, Cwd: "rel"},
		"bad network":     {Dir: dir, Args: []string{"true"}, Network: "bridge"},
		"missing bind":    {Dir: dir, Args: []string{"true"}, Mounts: []runner.Mount{{Source: "/no/such/dir", Target: "/x"}}},
		"root as target":  {Dir: dir, Args: []string{"true"}, Mounts: []runner.Mount{{Source: dir, Target: "/"}}},
		"unknown user":    {Dir: dir, Args: []string{"true"}, User: "nobody-here"},
		"file as cwd dir": {Dir: dir, Args: []string{"true"}, Cwd: "/data/file/sub"},
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			r := run(t, s)
			if r.err == nil || r.code > 0 {
				t.Fatalf("got code %d, err %v: want an error before the command runs", r.code, r.err)
			}
			t.Logf("OUTCOME %s: %v", name, r.err)
		})
	}
}
