package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// Runs may share one Mountpoint: each mounts its scratch tmpfs on it in
// its own mount namespace, and nothing reaches the directory on disk.
func TestSharedMountpoint(t *testing.T) {
	dir := newRootfs(t)
	mnt := t.TempDir()
	errs := make(chan error, 2)
	outs := make(chan string, 2)
	for i := 0; i < 2; i++ {
		go func() {
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			code, err := runner.Run(ctx, runner.Spec{
				Dir: dir, Mountpoint: mnt, Env: []string{"PATH=/bin"},
				Args: sh("echo $$ > /data/file; sleep 0.2; cat /data/file"),
			}, runner.Stdio{Stdout: &out})
			if err == nil && code != 0 {
				err = fmt.Errorf("exit status %d", code)
			}
			errs <- err
			outs <- out.String()
		}()
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		// Each sees its own write: the scratch (overlay upper) is its own.
		if out := <-outs; strings.TrimSpace(out) == "" {
			t.Errorf("empty output")
		}
	}
	if entries, err := os.ReadDir(mnt); err != nil || len(entries) != 0 {
		t.Errorf("the mount point holds %v (%v); want it empty", entries, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "data")); len(entries) != 1 {
		t.Errorf("the image's /data changed: %v", entries)
	}
	// A mount point that is not a directory is refused before anything runs.
	f := filepath.Join(t.TempDir(), "file")
	must(t, os.WriteFile(f, nil, 0o644))
	if r := run(t, runner.Spec{Dir: dir, Mountpoint: f, Args: []string{"true"}}); r.err == nil {
		t.Errorf("a file as the mount point was accepted")
	}
}
