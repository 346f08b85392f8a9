package registry

import (
	"hash"
	"io"
	"sync"
)

// bodyBufSize is how much of an upload body is gathered before it is
// written and hashed: whole 32 KiB pieces at 32 KiB offsets, whatever
// sizes the body's reads return (a chunked body's reads end at its chunk
// boundaries). Bigger pieces were no cheaper when measured (the bytes are
// copied and hashed once either way), and they make the kernel fill
// bigger page-cache folios, which sometimes cost several times more per
// byte to fill on the 2-core VM bench/registry.sh ran on.
const bodyBufSize = 32 << 10

var bodyBufs = sync.Pool{New: func() any { b := make([]byte, bodyBufSize); return &b }}

// streamBody copies body into w, feeding h exactly the bytes w accepted,
// so that a failed write leaves the hash matching what was stored. It
// returns how many bytes were stored and the first error other than the
// body's end; bytes read before a read error are stored first.
func streamBody(w io.Writer, h hash.Hash, body io.Reader) (int64, error) {
	bp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := fill(body, buf)
		if n > 0 {
			nw, werr := w.Write(buf[:n])
			h.Write(buf[:nw]) // a hash.Hash never fails
			total += int64(nw)
			if werr == nil && nw < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// fill reads r into buf until buf is full or r fails; unlike io.ReadFull
// it passes r's error on as it is, so that io.EOF means a clean end and a
// body cut short (io.ErrUnexpectedEOF from net/http) stays an error.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
