package unpack

import (
	"archive/tar"
	"fmt"
	"runtime"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// The applier makes every entry itself, in tar order, so that names,
// replacements, links and whiteouts resolve exactly as the tar says. What
// follows the making of a regular file (writing its content, then owner,
// xattrs, mode and times) goes through the descriptor the applier opened
// with O_CREAT|O_EXCL|O_NOFOLLOW, never through a name, so no later entry
// can redirect it and it can run beside the next entries: the applier
// gathers small files' content into batches that writer goroutines finish.
// A layer of many small files is mostly system calls, and this spreads
// them over two cores instead of one.

const (
	// batchBytes is the content gathered per hand-off; a larger file is
	// written by the applier itself, straight from the tar.
	batchBytes = 1 << 20
	// batchFiles bounds the files per hand-off, batches the hand-offs in
	// flight: together they bound the memory (4 MiB) and the descriptors
	// (128) held open.
	batchFiles = 32
	batches    = 4
)

// fileJob is a regular file made, whose content and metadata are yet to
// be written.
type fileJob struct {
	fd    int
	seq   int // its entry's number, to order warnings
	rel   string
	h     *tar.Header
	owner bool // its owner must be set or recorded
	data  []byte
}

type batch struct {
	jobs []fileJob
	buf  []byte
}

func (b *batch) room(size int64) bool {
	return len(b.jobs) < batchFiles && int64(len(b.buf))+size <= batchBytes
}

// writers finish the batches of one applier.
type writers struct {
	rootless   bool
	todo, free chan *batch
	wg         sync.WaitGroup
	cur        *batch // being filled by the applier

	mu    sync.Mutex
	err   error // the first job that failed; later jobs only close
	notes []seqWarning
}

type seqWarning struct {
	seq int
	w   Warning
}

// newWriters starts one writer fewer than there are CPUs to run Go (the
// applier keeps one busy), at least one and at most four.
func newWriters(rootless bool) *writers {
	w := &writers{rootless: rootless, todo: make(chan *batch, batches), free: make(chan *batch, batches)}
	for range batches {
		w.free <- &batch{} // its buffer is made on first use: most layers are small
	}
	n := min(max(runtime.GOMAXPROCS(0)-1, 1), 4)
	w.wg.Add(n)
	for range n {
		go w.run()
	}
	w.cur = <-w.free
	return w
}

func (w *writers) run() {
	defer w.wg.Done()
	for b := range w.todo {
		for _, j := range b.jobs {
			w.finish(j)
		}
		b.jobs, b.buf = b.jobs[:0], b.buf[:0]
		w.free <- b
	}
}

// add queues a file whose content the caller reads into the returned
// slice of size bytes; call flush if it does not fit (room is false).
func (w *writers) add(j fileJob) []byte {
	if w.cur.buf == nil {
		w.cur.buf = make([]byte, 0, batchBytes)
	}
	off := len(w.cur.buf)
	w.cur.buf = w.cur.buf[:off+int(j.h.Size)]
	j.data = w.cur.buf[off:]
	w.cur.jobs = append(w.cur.jobs, j)
	return j.data
}

// flush hands the batch being filled to the writers.
func (w *writers) flush() {
	if len(w.cur.jobs) == 0 {
		return
	}
	w.todo <- w.cur
	w.cur = <-w.free
}

// failed is the first error of a job, if any.
func (w *writers) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// stop finishes what was queued, stops the goroutines and returns the
// first error. The jobs of a batch not flushed are only closed.
func (w *writers) stop() error {
	for _, j := range w.cur.jobs {
		unix.Close(j.fd)
	}
	w.cur.jobs = nil
	close(w.todo)
	w.wg.Wait()
	return w.err
}

// finish writes a job's content and metadata and closes it; once a job
// failed, the rest are only closed.
func (w *writers) finish(j fileJob) {
	if w.failed() != nil {
		unix.Close(j.fd)
		return
	}
	err := writeAll(j.fd, j.data)
	var n notes
	if err == nil {
		err = finishFile(j, w.rootless, &n)
	} else {
		unix.Close(j.fd)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range n {
		w.notes = append(w.notes, seqWarning{j.seq, Warning{Path: "/" + j.rel, Reason: r}})
	}
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("%s: %w", j.h.Name, err)
	}
}

// finishFile sets a written file's owner, xattrs, mode and times, in that
// order (chown clears setuid bits and security.capability, writing moves
// the mtime, and unprivileged user.* xattrs need the write permission a
// read-only mode takes away), and closes it.
func finishFile(j fileJob, rootless bool, n *notes) error {
	defer unix.Close(j.fd)
	if j.owner {
		if err := setOwner(-1, "", j.fd, j.h, rootless, n); err != nil {
			return err
		}
	}
	setXattrs(j.fd, j.h, n)
	if err := unix.Fchmod(j.fd, uint32(j.h.Mode&0o7777)); err != nil {
		return err
	}
	return setTimesFd(j.fd, j.h)
}

// sortWarnings orders the applier's and the writers' warnings as their
// entries were in the tar.
func sortWarnings(ws ...[]seqWarning) []Warning {
	var all []seqWarning
	for _, w := range ws {
		all = append(all, w...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	out := make([]Warning, len(all))
	for i, w := range all {
		out[i] = w.w
	}
	return out
}
