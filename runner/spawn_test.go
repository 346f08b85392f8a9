package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgtool/imgtool/runner"
)

// With files (or nothing) as stdio the init is started without os/exec
// (see spawn.go); it behaves as with any other stdio: a nil stdin reads
// as /dev/null, death by a signal is 128+N, and a cancelled context
// kills the container.
func TestFileStdioProcess(t *testing.T) {
	dir := newRootfs(t)
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	must(t, err)
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := runner.Spec{Dir: dir, Env: []string{"PATH=/bin"}}
	for _, tc := range []struct {
		script string
		code   int
		out    string
	}{
		{"cat; echo read all", 0, "read all\n"},
		{"echo to stderr >&2; kill -KILL $$", 128 + 9, "to stderr\n"},
	} {
		must(t, out.Truncate(0))
		_, err := out.Seek(0, 0)
		must(t, err)
		spec.Args = sh(tc.script)
		code, err := runner.Run(ctx, spec, runner.Stdio{Stdout: out, Stderr: out})
		b, _ := os.ReadFile(out.Name())
		if err != nil || code != tc.code || string(b) != tc.out {
			t.Errorf("%q: got %d, %v, %q; want %d, %q", tc.script, code, err, b, tc.code, tc.out)
		}
	}

	short, stop := context.WithCancel(ctx)
	time.AfterFunc(300*time.Millisecond, stop)
	start := time.Now()
	spec.Args = sh("sleep 30")
	code, err := runner.Run(short, spec, runner.Stdio{Stdout: out})
	if took := time.Since(start); took > 10*time.Second || (err == nil && code == 0) {
		t.Errorf("cancelled after 300ms: got %d, %v after %v; want the container killed", code, err, took)
	}
}
