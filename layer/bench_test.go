package layer_test

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgtool/imgtool/layer"
)

// BenchmarkWrite writes a layer of a generated tree (LAYER_BENCH_TREE, or
// a small tree made here); bench/layer.sh runs it against tar|zstd on the
// issue's 200 MB, 20,000-file tree.
func BenchmarkWrite(b *testing.B) {
	root := benchTree(b)
	var size int64
	filepath.Walk(root, func(_ string, fi os.FileInfo, _ error) error {
		if fi != nil && fi.Mode().IsRegular() {
			size += fi.Size()
		}
		return nil
	})
	for _, c := range []layer.Compression{layer.Zstd, layer.Gzip, layer.None} {
		b.Run(string(c), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				ch, err := layer.Dir(root)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := layer.Write(context.Background(), io.Discard, root, ch, layer.Options{Compression: c}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The yardstick for the gzip path: the same tar through the
	// standard library's gzip.
	b.Run("stdlib-gzip", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			ch, err := layer.Dir(root)
			if err != nil {
				b.Fatal(err)
			}
			gz := gzip.NewWriter(io.Discard)
			if _, err := layer.Write(context.Background(), gz, root, ch, layer.Options{Compression: layer.None}); err != nil {
				b.Fatal(err)
			}
			gz.Close()
		}
	})
}

// BenchmarkDiff: the snapshot diff of the benchmark tree after 10 files
// changed (issue 3: under 10% of the time of writing the whole layer).
func BenchmarkDiff(b *testing.B) {
	root := benchTree(b)
	// Work on a copy: the benchmark changes files.
	work := b.TempDir()
	if err := os.CopyFS(work, os.DirFS(root)); err != nil {
		b.Fatal(err)
	}
	before, err := layer.Take(work)
	if err != nil {
		b.Fatal(err)
	}
	var changed int
	filepath.Walk(work, func(p string, fi os.FileInfo, _ error) error {
		if changed < 10 && fi != nil && fi.Mode().IsRegular() {
			changed++
			return os.WriteFile(p, []byte("changed"), 0o644)
		}
		return nil
	})
	for b.Loop() {
		if _, err := layer.Diff(before, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// benchTree is $LAYER_BENCH_TREE (bench/layer.sh makes the tree),
// or a small tree of 500 files made here.
func benchTree(b *testing.B) string {
	if root := os.Getenv("LAYER_BENCH_TREE"); root != "" {
		return root
	}
	root := b.TempDir()
	for i := range 500 {
		d := filepath.Join(root, fmt.Sprintf("d%02d", i%20))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", i)), make([]byte, 10<<10), 0o644)
	}
	return root
}
