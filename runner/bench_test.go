package runner_test

import (
	"context"
	"os"
	"testing"

	"github.com/imgtool/imgtool/runner"
)

// BenchmarkRun times the runner's part of a warm `imgtool run IMAGE
// true`: clone, id maps, the init's start (this test binary, smaller
// than imgtool but larger than the embedded runner-init), mounts,
// pivot_root, the command, and the exit report. bench/run.sh times the
// whole CLI against its peers.
func BenchmarkRun(b *testing.B) {
	dir := newRootfs(b)
	mnt := b.TempDir()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	stdio := runner.Stdio{Stdin: devnull, Stdout: devnull, Stderr: devnull}
	spec := runner.Spec{Dir: dir, Mountpoint: mnt, Env: []string{"PATH=/bin"}, Args: []string{"true"}}
	ctx := context.Background()
	for b.Loop() {
		if code, err := runner.Run(ctx, spec, stdio); err != nil || code != 0 {
			b.Fatalf("got %d, %v", code, err)
		}
	}
}
