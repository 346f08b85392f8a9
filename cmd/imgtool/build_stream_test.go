package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildStreamedCopyUnprivileged: a COPY into a FROM scratch stage
// streams its layer from the context (no root filesystem is written);
// built as uid 65534 it gives the image root gives, digest for digest,
// with --chown owners, symlinks and hard links as they are.
func TestBuildStreamedCopyUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root to build as root and as uid 65534 and compare: run the suite as root (CI does: sudo make test)")
	}
	c := newCLI(t)
	base := nobodyDir(t)
	dir := writeContext(t, filepath.Join(base, "ctx"), map[string]string{
		"Dockerfile": "FROM scratch\nCOPY --chown=1000:50 app /app/\nCOPY --chmod=0755 tool /usr/local/bin/\n",
		"app/a.txt":  "a", "app/sub/b.txt": "b", "tool/tool": "#!/bin/sh\n",
	})
	// A symlink in a COPY without --chown: with --chown, root chowns the
	// link and uid 65534 cannot record an owner on it, so the two differ.
	if err := os.Symlink("tool", filepath.Join(dir, "tool/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "app/a.txt"), filepath.Join(dir, "app/hard")); err != nil {
		t.Fatal(err)
	}
	chownTree(t, base, nobody)
	const epoch = "SOURCE_DATE_EPOCH=1700000000"
	c.env = append(c.env, epoch)
	asRoot := strings.TrimSpace(c.ok("build", "-t", "root:1", dir))

	got, _ := buildAsNobody(t, c, base, "nobody:1", dir, epoch)
	if got != asRoot {
		t.Errorf("built as uid %d: %s; as root: %s", nobody, got, asRoot)
	}
	files := exportFiles(t, c, "nobody:1")
	for name, want := range map[string][2]int{"app": {1000, 50}, "app/a.txt": {1000, 50}, "app/sub": {1000, 50}, "usr/local/bin/link": {0, 0}, "usr/local/bin/tool": {0, 0}} {
		if h := files[name]; h == nil || h.Uid != want[0] || h.Gid != want[1] {
			t.Errorf("%s: %+v, want owner %d:%d", name, h, want[0], want[1])
		}
	}
	if h := files["app/hard"]; h == nil || h.Linkname != "app/a.txt" {
		t.Errorf("app/hard: %+v, want a hard link to app/a.txt", h)
	}
	if h := files["usr/local/bin/tool"]; h == nil || h.Mode&0o777 != 0o755 {
		t.Errorf("usr/local/bin/tool: %+v", h)
	}
}
