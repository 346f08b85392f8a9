package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestFilesDigestBatches: the files of a COPY are read on every core in
// batches, and the key is the same whatever the batch size, with and
// without a stat cache that vouches for some of them; a changed file or
// a file's mode changes it.
func TestFilesDigestBatches(t *testing.T) {
	files := map[string]string{".dockerignore": "ignored\n"}
	for i := range 300 {
		files[fmt.Sprintf("d%d/f%03d", i%7, i)] = fmt.Sprint("content ", i)
	}
	files["ignored/x"] = "x"
	dir := contextDir(t, files)
	must(t, os.Symlink("d1/f001", filepath.Join(dir, "link")))
	must(t, os.Link(filepath.Join(dir, "d2/f002"), filepath.Join(dir, "hard")))
	cache, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keyOf := func(batch int, sc *statCache) string {
		t.Helper()
		src, err := newContext(dir, []string{"ignored"})
		if err != nil {
			t.Fatal(err)
		}
		r := &buildRun{stat: sc, hashBatch: batch}
		d, err := r.filesDigest(context.Background(), nil, src, []string{"."}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	want := keyOf(0, newStatCache(nil, dir))
	for _, batch := range []int{1, 7, 64, 1000} {
		if got := keyOf(batch, newStatCache(nil, dir)); got != want {
			t.Errorf("batch %d: key %s, want %s", batch, got, want)
		}
	}
	sc := newStatCache(cache, dir)
	if got := keyOf(13, sc); got != want || sc.hashed != 301 {
		t.Errorf("with a stat cache: key %s (hashed %d files), want %s", got, sc.hashed, want)
	}
	mustWrite(t, filepath.Join(dir, "d3/f003"), "changed")
	if got := keyOf(5, newStatCache(nil, dir)); got == want {
		t.Error("a changed file left the key as it was")
	}
	mustWrite(t, filepath.Join(dir, "d3/f003"), "content 3")
	must(t, os.Chmod(filepath.Join(dir, "d4/f004"), 0o600))
	if got := keyOf(5, newStatCache(nil, dir)); got == want {
		t.Error("a changed mode left the key as it was")
	}
}
