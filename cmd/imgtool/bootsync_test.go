package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunUnsyncedChainAfterReboot: `imgtool run` publishes an image's
// files without syncing them, marked with this boot's ID; after a reboot
// (here: the marker rewritten to another boot's ID, and a file's data
// lost as a crash loses it) the next run unpacks the image again instead
// of running it on damaged files. `imgtool prune` syncs the chains of
// this boot, which are then trusted whatever the boot.
func TestRunUnsyncedChainAfterReboot(t *testing.T) {
	raw, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatalf("this test needs the kernel's boot ID: %v", err)
	}
	bootID := strings.TrimSpace(string(raw))
	for who, c := range runIdentities(t) {
		t.Run(who, func(t *testing.T) {
			importBusybox(t, c, "example.com/bb:1")
			if out := c.ok("run", "example.com/bb:1", "cat", "/data/file"); out != "image\n" {
				t.Fatalf("first run: %q", out)
			}
			marks, _ := filepath.Glob(filepath.Join(c.root, "cache", "unpack", "*", "unsynced", "*"))
			if len(marks) != 1 {
				t.Fatalf("markers after the first run: %v, want the image's one chain", marks)
			}
			if got, _ := os.ReadFile(marks[0]); string(got) != bootID+"\n" {
				t.Fatalf("marker %s says %q, want this boot's ID %q", marks[0], got, bootID)
			}
			file := filepath.Join(filepath.Dir(filepath.Dir(marks[0])), "chains", filepath.Base(marks[0]), "data", "file")
			must(t, os.Truncate(file, 0))
			if out := c.ok("run", "example.com/bb:1", "cat", "/data/file"); out != "" {
				t.Fatalf("a run during the same boot unpacked again: %q", out)
			}

			must(t, os.WriteFile(marks[0], []byte("another-boot\n"), 0o644))
			if out := c.ok("run", "example.com/bb:1", "cat", "/data/file"); out != "image\n" {
				t.Fatalf("a run after a reboot used the damaged chain: %q", out)
			}
			if got, _ := os.ReadFile(marks[0]); string(got) != bootID+"\n" {
				t.Errorf("the chain unpacked again is marked %q, want %q", got, bootID)
			}

			c.ok("prune")
			if got, _ := filepath.Glob(filepath.Join(c.root, "cache", "unpack", "*", "unsynced", "*")); len(got) != 0 {
				t.Fatalf("markers after prune: %v, want none", got)
			}
			// Synced: trusted on any boot, so not unpacked again (which the
			// emptied file shows).
			must(t, os.Truncate(file, 0))
			if out := c.ok("run", "example.com/bb:1", "cat", "/data/file"); out != "" {
				t.Errorf("a synced chain was unpacked again: %q", out)
			}
		})
	}
}
