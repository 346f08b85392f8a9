package layer

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestParallelZstd: frames compressed on several goroutines make one
// stream that decoders read back whole, the same bytes whatever the
// number of workers and however the input is split into writes.
func TestParallelZstd(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	text := bytes.Repeat([]byte("layer content that compresses well; "), 1<<16)
	noise := make([]byte, 3*zstdChunk+12345)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	for _, in := range [][]byte{nil, []byte("small"), text, append(text, noise...)} {
		var first []byte
		for _, workers := range []int{1, 2, 5} {
			var out bytes.Buffer
			z, err := newParallelZstd(&out, zstd.SpeedDefault, workers)
			if err != nil {
				t.Fatal(err)
			}
			for rest := in; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(3*zstdChunk/2))
				if _, err := z.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			if err := z.Close(); err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = out.Bytes()
			} else if !bytes.Equal(first, out.Bytes()) {
				t.Errorf("%d bytes in: %d workers gave other bytes than 1", len(in), workers)
			}
			d, err := zstd.NewReader(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(d)
			d.Close()
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("%d bytes in, %d workers: read back %d bytes (%v)", len(in), workers, len(got), err)
			}
		}
		if path, err := exec.LookPath("zstd"); err == nil {
			cmd := exec.Command(path, "-d", "-c")
			cmd.Stdin = bytes.NewReader(first)
			got, err := cmd.Output()
			if err != nil || !bytes.Equal(got, in) {
				t.Errorf("%d bytes in: the zstd tool read back %d bytes (%v)", len(in), len(got), err)
			}
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n--; f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// TestParallelZstdWriteError: a failing destination fails the writes
// and Close, without hanging.
func TestParallelZstdWriteError(t *testing.T) {
	z, err := newParallelZstd(&failWriter{n: 1}, zstd.SpeedFastest, 2)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, zstdChunk)
	var werr error
	for i := 0; i < 20 && werr == nil; i++ {
		_, werr = z.Write(buf)
	}
	if cerr := z.Close(); cerr == nil {
		t.Errorf("Close after a failed write: nil error (writes: %v)", werr)
	}
}
