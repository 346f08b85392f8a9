package unpack

import (
	"io"
	"sync"
)

// readAhead reads r on its own goroutine into a few buffers, so that
// decompressing and hashing overlap with the system calls that make files.
// Close stops the goroutine and waits for it; after Close, r is not read
// again.
type readAhead struct {
	full  chan []byte
	free  chan []byte
	stop  chan struct{}
	done  sync.WaitGroup
	held  []byte // the buffer being consumed, returned to free when done
	cur   []byte // its unread part
	err   error  // the reader's error, read after full is closed
	close sync.Once
}

const (
	readAheadBuf  = 256 << 10
	readAheadBufs = 8
)

func newReadAhead(r io.Reader) *readAhead {
	ra := &readAhead{full: make(chan []byte, readAheadBufs), free: make(chan []byte, readAheadBufs), stop: make(chan struct{})}
	for range readAheadBufs {
		ra.free <- make([]byte, readAheadBuf)
	}
	ra.done.Add(1)
	go ra.fill(r)
	return ra
}

func (ra *readAhead) fill(r io.Reader) {
	defer ra.done.Done()
	defer close(ra.full)
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		n, err := io.ReadFull(r, buf[:cap(buf)])
		if n > 0 {
			select {
			case ra.full <- buf[:n]:
			case <-ra.stop:
				return
			}
		}
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if err != nil {
			ra.err = err
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.held != nil {
			ra.free <- ra.held[:cap(ra.held)]
			ra.held = nil
		}
		buf, ok := <-ra.full
		if !ok {
			return 0, ra.err
		}
		ra.held, ra.cur = buf, buf
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops reading ahead and waits until the goroutine has stopped.
func (ra *readAhead) Close() {
	ra.close.Do(func() {
		close(ra.stop)
		ra.done.Wait()
	})
}
