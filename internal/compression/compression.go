// Package compression detects how a layer blob is compressed, by its magic
// bytes rather than its media type (which registries and archives get
// wrong), and decompresses it. The layer writer and the unpacker share it.
package compression

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Kinds of compression.
const (
	Gzip = "gzip"
	Zstd = "zstd"
	None = "none"
)

// maxZstdWindow bounds the memory a zstd stream may ask the decoder for:
// a hostile frame header must not make it allocate gigabytes.
const maxZstdWindow = 128 << 20

// Decompress returns the uncompressed stream of r and the compression it
// found. Closing the result releases the decoder, not r.
func Decompress(r io.Reader) (io.ReadCloser, string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, "", fmt.Errorf("detect compression: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gz, err := pgzip.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("read gzip: %w", err)
		}
		return gz, Gzip, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// One stream decodes at over 2 GB/s on one core, faster than any
		// reader here (hashing, writing files) consumes it: the concurrent
		// decoder's goroutines only added hand-offs (unpacking a 128 MB
		// layer: about 30 ms more CPU with GOMAXPROCS decoders than with
		// one, for the same wall time).
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, "", fmt.Errorf("read zstd: %w", err)
		}
		return zr.IOReadCloser(), Zstd, nil
	}
	return io.NopCloser(br), None, nil
}
