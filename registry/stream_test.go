package registry

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// limitedWriter stores up to room bytes, then fails.
type limitedWriter struct {
	bytes.Buffer
	room int
}

var errFull = errors.New("storage full")

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) <= l.room {
		l.room -= len(p)
		return l.Buffer.Write(p)
	}
	n, _ := l.Buffer.Write(p[:l.room])
	l.room = 0
	return n, errFull
}

func TestStreamBody(t *testing.T) {
	data := make([]byte, 3*bodyBufSize+12345)
	for i := range data {
		data[i] = byte(i*31 + i>>9)
	}
	cut := errors.New("connection reset")
	for _, tc := range []struct {
		name    string
		body    io.Reader
		room    int // 0: unlimited
		stored  int
		wantErr error
	}{
		{name: "empty", body: bytes.NewReader(nil), stored: 0},
		{name: "one byte", body: bytes.NewReader(data[:1]), stored: 1},
		{name: "exactly one buffer", body: bytes.NewReader(data[:bodyBufSize]), stored: bodyBufSize},
		{name: "one buffer and a byte", body: bytes.NewReader(data[:bodyBufSize+1]), stored: bodyBufSize + 1},
		{name: "several buffers", body: bytes.NewReader(data), stored: len(data)},
		{name: "one byte per read", body: iotest.OneByteReader(bytes.NewReader(data[:5000])), stored: 5000},
		{name: "half reads", body: iotest.HalfReader(bytes.NewReader(data)), stored: len(data)},
		{name: "data and EOF together", body: iotest.DataErrReader(bytes.NewReader(data)), stored: len(data)},
		{name: "cut after some bytes", body: io.MultiReader(bytes.NewReader(data[:70000]), iotest.ErrReader(cut)), stored: 70000, wantErr: cut},
		{name: "cut short body keeps its error", body: io.MultiReader(bytes.NewReader(data[:10]), iotest.ErrReader(io.ErrUnexpectedEOF)), stored: 10, wantErr: io.ErrUnexpectedEOF},
		{name: "storage fails mid-buffer", body: bytes.NewReader(data), room: bodyBufSize + 100, stored: bodyBufSize + 100, wantErr: errFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &limitedWriter{room: tc.room}
			if tc.room == 0 {
				w.room = len(data) + 1
			}
			h := sha256.New()
			n, err := streamBody(w, h, tc.body)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if n != int64(tc.stored) || w.Len() != tc.stored {
				t.Fatalf("reported %d bytes, stored %d, want %d", n, w.Len(), tc.stored)
			}
			if !bytes.Equal(w.Bytes(), data[:tc.stored]) {
				t.Fatal("stored bytes differ from the body")
			}
			if want := sha256.Sum256(data[:tc.stored]); !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatal("hash does not match the stored bytes")
			}
		})
	}
}
