// Package writebehind owns the filesystem storage driver the registry
// writes through: distribution/v3's own, whose file writers also ask the
// kernel to write each few megabytes to disk as soon as they are written.
//
// Without that, an upload's bytes sit dirty in the page cache until the
// fsync that commits them, so a push spends its whole transfer with the
// disk idle and then waits for the disk to write everything at the end.
// Started early, the disk writes while the network delivers, the final
// fsync only waits for the last few megabytes, and each upload keeps at
// most two chunks dirty, paced to what the disk takes, instead of filling
// the page cache with gigabytes that fsync then has to flush at once.
// (This is the write-behind pattern of sync_file_range(2); distribution's
// driver has no hook for it, and only the writer is wrapped: everything
// else, and every byte, still goes through distribution's driver.)
package writebehind

import (
	"context"
	"os"
	"path/filepath"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// Chunk is how many bytes a writer lets accumulate before it starts
// writing them back, and how far behind it waits for the disk.
const Chunk = 8 << 20

// New returns distribution's filesystem driver for params, with writers
// that write behind.
func New(params filesystem.DriverParameters) storagedriver.StorageDriver {
	return &driver{StorageDriver: filesystem.New(params), root: params.RootDirectory}
}

type driver struct {
	storagedriver.StorageDriver
	root string
}

// Writer opens path with distribution's driver, and the same file again
// read-only, which is all sync_file_range needs: the kernel writes back an
// inode's pages whichever descriptor asks. When that second open fails
// the writer only loses the hints.
func (d *driver) Writer(ctx context.Context, path string, append bool) (storagedriver.FileWriter, error) {
	fw, err := d.StorageDriver.Writer(ctx, path, append)
	if err != nil {
		return nil, err
	}
	// path passed the driver's own path checks, and it joins it the same way.
	f, err := os.Open(filepath.Join(d.root, path))
	if err != nil {
		return fw, nil
	}
	return &writer{FileWriter: fw, f: f, pace: pacer{chunk: Chunk, started: fw.Size(), waited: fw.Size()}, hint: hint}, nil
}

type writer struct {
	storagedriver.FileWriter
	f    *os.File
	pace pacer
	hint func(f *os.File, start, wait span)
}

func (w *writer) Write(p []byte) (int, error) {
	n, err := w.FileWriter.Write(p)
	if start, wait, ok := w.pace.advance(w.FileWriter.Size()); ok {
		w.hint(w.f, start, wait)
	}
	return n, err
}

// hint starts writing back start and waits for wait. Errors are left to
// the fsync of Commit or Close, which reports a failed writeback of the
// file to its own descriptor too.
func hint(f *os.File, start, wait span) {
	_ = startWriteback(f, start)
	_ = awaitWriteback(f, wait)
}

func (w *writer) Close() error {
	defer w.f.Close()
	return w.FileWriter.Close()
}

func (w *writer) Cancel(ctx context.Context) error {
	defer w.f.Close()
	return w.FileWriter.Cancel(ctx)
}

// span is the byte range [off, off+n) of a file.
type span struct{ off, n int64 }

// pacer decides, as a file grows, which bytes to start writing back and
// which earlier ones to wait for.
type pacer struct {
	chunk           int64
	started, waited int64 // writeback was started below started, awaited below waited
}

// advance tells, now that the file holds end bytes, the range whose
// writeback to start and the range, a chunk behind, to wait for (n is
// zero when there is none); ok is false until a chunk has accumulated.
func (p *pacer) advance(end int64) (start, wait span, ok bool) {
	if end-p.started < p.chunk {
		return span{}, span{}, false
	}
	start = span{p.started, end - p.started}
	if p.started > p.waited {
		wait = span{p.waited, p.started - p.waited}
	}
	p.waited, p.started = p.started, end
	return start, wait, true
}
