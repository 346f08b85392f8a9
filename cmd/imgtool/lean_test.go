package main_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLeanStartup checks the binary `make build` produces: its process
// start initialises none of the registry's packages, nor the build
// package and the Dockerfile parser's (BuildKit, protobuf, gob).
func TestLeanStartup(t *testing.T) {
	cmd := exec.Command(binary, "version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("imgtool version: %v\n%s", err, errb.String())
	}
	inits := 0
	for line := range strings.Lines(errb.String()) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "init" {
			continue
		}
		inits++
		for _, h := range []string{"github.com/distribution/", "github.com/prometheus/", "go.opentelemetry.io/", "google.golang.org/grpc", "github.com/aws/", "github.com/imgtool/imgtool/registry",
			"github.com/imgtool/imgtool/build", "github.com/moby/buildkit/", "google.golang.org/protobuf/", "encoding/gob"} {
			if strings.HasPrefix(f[1], h) {
				t.Errorf("imgtool version initialises %s", f[1])
			}
		}
	}
	if inits == 0 {
		t.Fatalf("no inittrace output:\n%s", errb.String())
	}
}

// TestLeanRegistryServe checks that `imgtool registry serve` of the lean
// binary is the full imgtool in the same process (the PID the operator
// started and signals), published under the data root, and that SIGTERM
// reaches the server, which stops cleanly.
func TestLeanRegistryServe(t *testing.T) {
	root := t.TempDir()
	srv := startRegistry(t, root, "--access-log=false")
	exe, err := os.Readlink("/proc/" + strconv.Itoa(srv.cmd.Process.Pid) + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(filepath.Join(root, "cache", "imgtool-full")) + `/[0-9a-f]{64}$`).MatchString(exe) {
		t.Errorf("registry serve runs %s, want the full imgtool under <root>/cache/imgtool-full", exe)
	}
	resp, err := http.Get("http://" + srv.addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/: %s", resp.Status)
	}
	srv.stop(t)
	if ws, ok := srv.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("after SIGTERM: %v, want a clean exit", srv.cmd.ProcessState)
	}
}

// TestLeanRegistryHelp: help of the registry commands comes from the full
// imgtool, subcommands included, however it is asked for.
func TestLeanRegistryHelp(t *testing.T) {
	c := newCLI(t)
	for _, args := range [][]string{{"registry", "--help"}, {"registry"}, {"help", "registry"}} {
		out := c.ok(args...)
		for _, sub := range []string{"serve", "gc", "import", "user"} {
			if !regexp.MustCompile(`(?m)^  ` + sub + ` `).MatchString(out) {
				t.Errorf("imgtool %s does not list %s:\n%s", strings.Join(args, " "), sub, out)
			}
		}
	}
	if out := c.ok("help", "registry", "serve"); !strings.Contains(out, "--gc-interval") {
		t.Errorf("imgtool help registry serve:\n%s", out)
	}
	if msg := c.fail(2, "registry", "serve", "--no-such-flag"); msg != "imgtool: unknown flag: --no-such-flag" {
		t.Errorf("unknown flag: %q", msg)
	}
	// The full imgtool is published under the root the command line
	// names, wherever --root is on it (the last one counts, as in pflag).
	other, unused := t.TempDir(), t.TempDir()
	c.ok("registry", "--root", unused, "user", "--help", "--root="+other)
	for dir, want := range map[string]int{c.root: 1, other: 1, unused: 0} {
		if m, _ := filepath.Glob(filepath.Join(dir, "cache", "imgtool-full", "*")); len(m) != want {
			t.Errorf("%s: %v, want %d published", dir, m, want)
		}
	}
}

// TestLeanRegistryReadOnlyRoot: when the data root cannot take the full
// imgtool, it goes to the user's cache directory, and without one it
// runs from memory; either way the command works.
func TestLeanRegistryReadOnlyRoot(t *testing.T) {
	root, cache, home := t.TempDir(), t.TempDir(), t.TempDir()
	asNobody := os.Getuid() == 0
	for _, p := range []string{filepath.Dir(binary), filepath.Dir(root), filepath.Dir(cache), root, cache, home} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if asNobody {
		if err := os.Chown(cache, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Chmod(root, 0o555); err != nil {
		t.Fatal(err)
	}
	run := func(env ...string) string {
		t.Helper()
		cmd := exec.Command(binary, "--root", root, "registry", "--help")
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
		if asNobody {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("imgtool registry --help (%v): %v\n%s", env, err, errb.String())
		}
		return out.String()
	}
	if out := run("HOME="+home, "XDG_CACHE_HOME="+cache); !strings.Contains(out, "serve") {
		t.Errorf("help:\n%s", out)
	}
	if m, _ := filepath.Glob(filepath.Join(cache, "imgtool", "imgtool-full", "*")); len(m) != 1 {
		t.Errorf("not published in XDG_CACHE_HOME: %v", m)
	}
	if m, _ := filepath.Glob(filepath.Join(root, "cache", "*")); len(m) != 0 {
		t.Errorf("published in the read-only root: %v", m)
	}
	// Neither the root nor a home is writable.
	if out := run("HOME=/proc/nonexistent"); !strings.Contains(out, "serve") {
		t.Errorf("help from memory:\n%s", out)
	}
}

// TestLeanRegistryServeProfiles: with IMGTOOL_CPUPROFILE set, the full
// imgtool that the lean one becomes serves (the profiling timer of the
// lean process must not kill it) and writes the profile when it stops.
// The timer fires at a random point, so a few servers are started.
func TestLeanRegistryServeProfiles(t *testing.T) {
	for range 4 {
		serveProfiled(t)
	}
}

func serveProfiled(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	cmd := exec.Command(binary, "--root", t.TempDir(), "registry", "serve", "--addr", "127.0.0.1:0", "--access-log=false")
	cmd.Env = append(os.Environ(), "IMGTOOL_CPUPROFILE="+prof)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Wait()
		t.Fatalf("registry serve printed no address: %v (%v)\n%s", err, cmd.ProcessState, errb.String())
	}
	// Long enough for profiling ticks to reach the server.
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); {
		resp, err := http.Get("http://" + strings.TrimSpace(addr) + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, errb.String())
	}
	f, err := os.Open(prof)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("profile: %v", err)
	}
	if b, err := io.ReadAll(zr); err != nil || len(b) == 0 {
		t.Fatalf("profile: %d bytes, %v", len(b), err)
	}
}

// TestLeanFullCommands: build, prune and import of the lean binary are
// the full imgtool's, help and flag errors included, and a build's RUN
// steps start the container init the full imgtool carries too (which
// it publishes under the data root), not the full imgtool again.
func TestLeanFullCommands(t *testing.T) {
	c := newCLI(t)
	help := c.ok("--help")
	for cmd, flag := range map[string]string{"build": "--build-arg", "prune": "--keep-storage", "import": "--change"} {
		if !regexp.MustCompile(`(?m)^  ` + cmd + ` `).MatchString(help) {
			t.Errorf("imgtool --help does not list %s:\n%s", cmd, help)
		}
		if out := c.ok(cmd, "--help"); !strings.Contains(out, flag) {
			t.Errorf("imgtool %s --help has no %s:\n%s", cmd, flag, out)
		}
		if msg := c.fail(2, cmd, "--no-such-flag"); msg != "imgtool: unknown flag: --no-such-flag" {
			t.Errorf("%s: unknown flag: %q", cmd, msg)
		}
	}
	importBusybox(t, c, "base:1")
	dir := writeContext(t, t.TempDir(), map[string]string{"Dockerfile": "FROM base:1\nRUN /bin/busybox stat -L -c %s /proc/1/exe > /init-size\n"})
	c.ok("build", "-t", "ran:1", dir)
	inits, _ := filepath.Glob(filepath.Join(c.root, "cache", "runner-init", "*"))
	if len(inits) != 1 {
		t.Fatalf("after a build with a RUN step: inits %v, want the one the full imgtool carries", inits)
	}
	st, err := os.Stat(inits[0])
	must(t, err)
	got := strings.TrimSpace(c.ok("run", "ran:1", "cat", "/init-size"))
	if got != strconv.FormatInt(st.Size(), 10) {
		t.Errorf("the RUN step's PID 1 was %s bytes, want the init's %d", got, st.Size())
	}
	if m, _ := filepath.Glob(filepath.Join(c.root, "cache", "imgtool-full", "*")); len(m) != 1 {
		t.Errorf("full imgtool published: %v, want one", m)
	}
}
