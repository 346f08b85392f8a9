package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/internal/flock"
	"golang.org/x/sys/unix"
)

// The interoperability tests (TestInterop*) run real client programs
// against `imgtool registry serve`. Those written in Go are built from the
// Go module proxy at pinned versions; the others come from Debian
// (scripts/deps.sh installs them when run as root).
const (
	orasPkg    = "oras.land/oras/cmd/oras"
	orasVer    = "v1.3.6"
	cosignPkg  = "github.com/sigstore/cosign/v2/cmd/cosign"
	cosignVer  = "v2.6.5"
	cranePkg   = "github.com/google/go-containerregistry/cmd/crane"
	toolsEnv   = "IMGTOOL_TOOLS"
	toolsCache = "/var/tmp/imgtool-tools"
)

// goTool returns the path of the command pkg built at version, building it
// the first time into $IMGTOOL_TOOLS (default /var/tmp/imgtool-tools) as
// <name>-<version>/<name>: a cold build of oras or cosign costs minutes of
// CPU, a cached one nothing. With version "" the command is built at the
// version imgtool's go.mod requires (crane, whose module imgtool already
// uses); otherwise `go install pkg@version` builds it with its own go.mod,
// so that clients' dependencies never enter imgtool's. A lock serialises
// builders and the finished directory is renamed into place, so a
// concurrent or interrupted run never sees half a tool.
func goTool(t *testing.T, pkg, version string) string {
	t.Helper()
	name := path.Base(pkg)
	inModule := version == ""
	if inModule {
		out, err := exec.Command("go", "list", "-f", "{{.Module.Version}}", pkg).Output()
		if err != nil {
			t.Fatalf("find the version of %s in go.mod: %v", pkg, err)
		}
		version = strings.TrimSpace(string(out))
	}
	dir := os.Getenv(toolsEnv)
	if dir == "" {
		dir = toolsCache
	}
	final := filepath.Join(dir, name+"-"+version)
	exe := filepath.Join(final, name)
	if _, err := os.Stat(exe); err == nil {
		return exe
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("tools cache: %v (set %s to a writable directory)", err, toolsEnv)
	}
	lock, err := os.OpenFile(final+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("tools cache: %v (set %s to a writable directory)", err, toolsEnv)
	}
	defer lock.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := flock.Lock(ctx, lock, unix.LOCK_EX, true); err != nil {
		t.Fatalf("tools cache: %v", err)
	}
	if _, err := os.Stat(exe); err == nil { // built while we waited
		return exe
	}
	start := time.Now()
	if err := buildTool(ctx, dir, pkg, version, inModule, final); err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s@%s into %s in %s", pkg, version, final, time.Since(start).Round(time.Second))
	return exe
}

// buildTool builds pkg at version (in imgtool's module, or with its own
// go.mod) into a new directory beside final and renames it to final.
func buildTool(ctx context.Context, dir, pkg, version string, inModule bool, final string) error {
	tmp, err := os.MkdirTemp(dir, filepath.Base(final)+".tmp-")
	if err != nil {
		return fmt.Errorf("build %s@%s: %w", pkg, version, err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil { // runnable as uid 65534 too
		return fmt.Errorf("build %s@%s: %w", pkg, version, err)
	}
	var cmd *exec.Cmd
	if inModule {
		cmd = exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(tmp, path.Base(pkg)), pkg)
	} else {
		cmd = exec.CommandContext(ctx, "go", "install", pkg+"@"+version)
		cmd.Dir = tmp // outside imgtool's module: the tool's own go.mod decides
		cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s@%s (%s): %w\n%s", pkg, version, strings.Join(cmd.Args, " "), err, out)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("build %s@%s: %w", pkg, version, err)
	}
	return nil
}

// debTool returns the path of a program that a Debian package provides,
// or fails the test saying what to install.
func debTool(t *testing.T, program, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		t.Fatalf("%s is not installed: run `make test` as root (scripts/deps.sh installs it), or apt-get install %s", program, pkg)
	}
	return p
}

// client runs one client program for a test.
type client struct {
	t   *testing.T
	srv *server // whose log a failure shows
	exe string
	env []string // added to the test's environment
	dir string   // working directory, if not the test's
}

// run runs the program and returns its standard output; a failure shows
// the output and the registry's log.
func (c client) run(args ...string) string {
	c.t.Helper()
	out, err := c.cmd(args...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		c.t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s\nregistry log (tail):\n%s", filepath.Base(c.exe), strings.Join(args, " "), err, out, stderr, tail(c.srv.stderr(), 20))
	}
	return string(out)
}

// fail runs the program, which must fail, and returns its output.
func (c client) fail(args ...string) string {
	c.t.Helper()
	out, err := c.cmd(args...).CombinedOutput()
	if err == nil {
		c.t.Fatalf("%s %s succeeded, want failure:\n%s", filepath.Base(c.exe), strings.Join(args, " "), out)
	}
	return string(out)
}

func (c client) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(c.exe, args...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Dir = c.dir
	return cmd
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
