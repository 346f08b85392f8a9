package layer

import "io"

// asyncWriter hands full buffers to a goroutine that writes them to w, so
// that producing the tar (file system calls, reads) overlaps with hashing
// and feeding the compressor. Memory is bounded to a few buffers.
type asyncWriter struct {
	cur  []byte
	full chan []byte
	free chan []byte
	done chan error
}

const (
	asyncBufSize = 1 << 20
	asyncBufs    = 4
)

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{full: make(chan []byte, asyncBufs), free: make(chan []byte, asyncBufs), done: make(chan error, 1)}
	for range asyncBufs - 1 {
		a.free <- make([]byte, 0, asyncBufSize)
	}
	a.cur = make([]byte, 0, asyncBufSize)
	go func() {
		var err error
		for b := range a.full {
			if err == nil {
				_, err = w.Write(b)
			}
			a.free <- b[:0]
		}
		a.done <- err
	}()
	return a
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := copy(a.cur[len(a.cur):cap(a.cur)], p)
		a.cur = a.cur[:len(a.cur)+k]
		p = p[k:]
		if len(a.cur) == cap(a.cur) {
			a.full <- a.cur
			a.cur = <-a.free
		}
	}
	return n, nil
}

// Close writes what is buffered, waits for the writer goroutine, and
// returns the first error it met. It must be called exactly once.
func (a *asyncWriter) Close() error {
	if len(a.cur) > 0 {
		a.full <- a.cur
	}
	close(a.full)
	return <-a.done
}
