package unpack_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/unpack"
)

// BenchmarkRootfs times the target, a second materialisation of
// an image from the cache against its first unpack, on a one-layer image
// of $UNPACK_BENCH_TREE (bench/unpack.sh makes a debian-sized tree) or of
// a small tree made here:
//
//	first           Rootfs into an empty cache: unpack, mark with the boot ID, publish
//	first-synced    the same where the boot ID is unknown: unpack, syncfs, publish
//	hit             Rootfs of a cached image: what imgtool run mounts
//	clone-hardlink  Clone of the cached tree with hard links
//	clone-copy      Clone with file data copied (a writable rootfs without overlay)
//
// Each run writes a tree of its own, and the trees are removed only when
// the benchmark ends: on an ext4 without a journal, creating files right
// after removing thousands costs many times more (see bench/unpack.sh),
// which made every run after the first pay for the one before.
func BenchmarkRootfs(b *testing.B) {
	ctx := context.Background()
	blobs := newBlobs()
	l := benchLayer(b, blobs)
	work := b.TempDir()
	// b.Run calls each case more than once (N=1, then the N asked for):
	// every call gets directories no earlier one used.
	made := 0
	fresh := func(name string) string {
		made++
		return filepath.Join(work, fmt.Sprintf("%s-%d", name, made))
	}
	noBoot := unpack.WithBootID(func() (string, error) { return "", os.ErrNotExist })
	for _, bc := range []struct {
		name string
		opts []unpack.CacheOption
	}{{"first", nil}, {"first-synced", []unpack.CacheOption{noBoot}}} {
		name, opts := bc.name, bc.opts
		b.Run(name, func(b *testing.B) {
			for range b.N {
				c, err := unpack.OpenCache(ctx, fresh(name), unpack.Options{}, opts...)
				must(b, err)
				lease, err := c.Rootfs(ctx, blobs, []manifest.LayerDesc{l})
				must(b, err)
				lease.Release()
			}
		})
	}
	c, err := unpack.OpenCache(ctx, filepath.Join(work, "cache"), unpack.Options{})
	must(b, err)
	lease, err := c.Rootfs(ctx, blobs, []manifest.LayerDesc{l})
	must(b, err)
	defer lease.Release()
	b.Run("hit", func(b *testing.B) {
		for b.Loop() {
			l, err := c.Rootfs(ctx, blobs, []manifest.LayerDesc{l})
			must(b, err)
			l.Release()
		}
	})
	for _, hardlink := range []bool{true, false} {
		name := map[bool]string{true: "clone-hardlink", false: "clone-copy"}[hardlink]
		b.Run(name, func(b *testing.B) {
			for range b.N {
				must(b, unpack.Clone(ctx, lease.Dir, fresh(name), hardlink))
			}
		})
	}
}

// benchLayer puts a zstd layer of the bench tree into blobs.
func benchLayer(b *testing.B, blobs *memBlobs) manifest.LayerDesc {
	root := os.Getenv("UNPACK_BENCH_TREE")
	if root == "" {
		root = b.TempDir()
		for i := range 500 {
			d := filepath.Join(root, fmt.Sprintf("d%02d", i%20))
			must(b, os.MkdirAll(d, 0o755))
			must(b, os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", i)), bytes.Repeat([]byte{byte(i)}, 10<<10), 0o644))
		}
	}
	ch, err := layer.Dir(root)
	must(b, err)
	var buf bytes.Buffer
	d, err := layer.Write(context.Background(), &buf, root, ch, layer.Options{Compression: layer.Zstd})
	must(b, err)
	blobs.blobs[d.Digest] = buf.Bytes()
	return d
}
