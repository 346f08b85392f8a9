package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgtool/imgtool/runner"
)

// With files as stdio (what the CLI passes) Run returns on the init's
// exit report, before the init itself is reaped. Nothing of the container
// may outlive that report: not a background process, not a mount point
// in a Writable rootfs.
func TestFileStdioNothingOutlivesRun(t *testing.T) {
	for _, rootfs := range []runner.Rootfs{runner.Ephemeral, runner.Writable} {
		dir := newRootfs(t)
		out, err := os.Create(filepath.Join(t.TempDir(), "out"))
		must(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		code, err := runner.Run(ctx, runner.Spec{
			Dir: dir, Rootfs: rootfs, Env: []string{"PATH=/bin"},
			Args: sh("(sleep 0.3; echo late) & echo early; exit 5"),
		}, runner.Stdio{Stdout: out, Stderr: out})
		cancel()
		if err != nil || code != 5 {
			t.Fatalf("rootfs %d: got %d, %v; want 5", rootfs, code, err)
		}
		if rootfs == runner.Writable {
			for _, p := range []string{"proc", "dev", "sys"} {
				if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
					t.Errorf("the mount point /%s is still in the Writable rootfs after Run", p)
				}
			}
		}
		// The background writer was killed with the container.
		time.Sleep(600 * time.Millisecond)
		b, err := os.ReadFile(out.Name())
		must(t, err)
		if string(b) != "early\n" {
			t.Errorf("rootfs %d: output %q; a background process outlived Run", rootfs, b)
		}
		out.Close()
	}
}
