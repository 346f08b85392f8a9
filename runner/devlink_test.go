package runner_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/imgtool/imgtool/runner"
)

// An image whose /dev is a symlink to a host path gets its /dev tmpfs
// where the link resolves inside the root; nothing is created at the
// host path (the init runs before pivot_root, with the host's / as its
// root, so a careless join would follow the link out).
func TestDevSymlinkStaysInside(t *testing.T) {
	dir := newRootfs(t)
	host := t.TempDir()
	must(t, os.Symlink(host, filepath.Join(dir, "dev")))
	r := run(t, runner.Spec{Dir: dir, Args: sh("test -c /dev/null && test -L /dev/fd")})
	if r.err != nil || r.code != 0 {
		t.Fatalf("got %d %v %q", r.code, r.err, r.stderr)
	}
	if entries, _ := os.ReadDir(host); len(entries) != 0 {
		t.Fatalf("the container's /dev entries were made at the host path: %v", entries)
	}
}
