package layer

import (
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// klauspost's streaming zstd encoder compresses a stream on one
// goroutine at a time (a block depends on the window before it), so a
// large layer compresses at one core's speed. parallelZstd cuts the tar
// into chunks of zstdChunk bytes and compresses each as its own zstd
// frame, several at once, writing the frames in order: concatenated
// frames are one valid zstd stream (RFC 8878 §3.1), which containerd,
// docker and the zstd tool read like any other, as they read pzstd's.
// The chunk size is fixed, so the blob is the same whatever the number of
// cores. This is written here because klauspost offers no parallel
// stream encoder and pgzip's zstd counterpart does not exist.

const (
	zstdChunk      = 2 << 20 // of tar per frame: well above level 3's matches across files
	maxZstdWorkers = 16      // bounds the memory in flight: (workers+2) × 2 chunks
)

type zstdJob struct {
	in, out []byte
	done    chan struct{}
}

type parallelZstd struct {
	w     io.Writer
	enc   *zstd.Encoder
	cur   *zstdJob
	work  chan *zstdJob // to the compressors
	order chan *zstdJob // to the writer, in input order
	free  chan *zstdJob
	wg    sync.WaitGroup // compressors
	wrote chan struct{}  // closed when the writer is done
	mu    sync.Mutex
	err   error // the writer's first error
	any   bool  // a frame was submitted
}

func newParallelZstd(w io.Writer, level zstd.EncoderLevel, workers int) (*parallelZstd, error) {
	workers = max(1, min(workers, maxZstdWorkers))
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(workers))
	if err != nil {
		return nil, err
	}
	inflight := workers + 2
	z := &parallelZstd{w: w, enc: enc, work: make(chan *zstdJob, inflight), order: make(chan *zstdJob, inflight),
		free: make(chan *zstdJob, inflight), wrote: make(chan struct{})}
	for range inflight {
		z.free <- &zstdJob{in: make([]byte, 0, zstdChunk)}
	}
	for range workers {
		z.wg.Add(1)
		go func() {
			defer z.wg.Done()
			for j := range z.work {
				j.out = z.enc.EncodeAll(j.in, j.out[:0])
				close(j.done)
			}
		}()
	}
	go z.writer()
	return z, nil
}

// writer writes the frames in order and recycles their buffers.
func (z *parallelZstd) writer() {
	defer close(z.wrote)
	for j := range z.order {
		<-j.done
		if z.error() == nil {
			if _, err := z.w.Write(j.out); err != nil {
				z.mu.Lock()
				z.err = err
				z.mu.Unlock()
			}
		}
		j.in = j.in[:0]
		z.free <- j
	}
}

func (z *parallelZstd) error() error {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.err
}

func (z *parallelZstd) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if err := z.error(); err != nil {
			return n - len(p), err
		}
		if z.cur == nil {
			z.cur = <-z.free
		}
		k := copy(z.cur.in[len(z.cur.in):cap(z.cur.in)], p)
		z.cur.in = z.cur.in[:len(z.cur.in)+k]
		p = p[k:]
		if len(z.cur.in) == cap(z.cur.in) {
			z.submit()
		}
	}
	return n, nil
}

func (z *parallelZstd) submit() {
	j := z.cur
	z.cur = nil
	j.done = make(chan struct{})
	z.any = true
	z.order <- j
	z.work <- j
}

// Close compresses what is left, waits for every frame to be written,
// and returns the first write error. It must be called exactly once.
func (z *parallelZstd) Close() error {
	if z.cur != nil && (len(z.cur.in) > 0 || !z.any) {
		z.submit() // an empty input still gives one (empty) frame
	} else if z.cur == nil && !z.any {
		z.cur = <-z.free
		z.submit()
	}
	close(z.work)
	close(z.order)
	z.wg.Wait()
	<-z.wrote
	err := z.error()
	if cerr := z.enc.Close(); err == nil && cerr != nil && !errors.Is(cerr, zstd.ErrEncoderClosed) {
		err = cerr
	}
	return err
}
