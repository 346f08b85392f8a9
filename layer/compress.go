package layer

import (
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression of a layer blob.
type Compression string

// The compressions imgtool writes. Zstd is the default (DESIGN.md); Gzip is
// for clients that cannot pull zstd (docker before 23, containerd before
// 1.5).
const (
	Zstd Compression = "zstd"
	Gzip Compression = "gzip"
	None Compression = "none"
)

// ParseCompression parses a --compression value.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case Zstd, Gzip, None:
		return c, nil
	case "":
		return Zstd, nil
	case "uncompressed":
		return None, nil
	}
	return "", fmt.Errorf("compression %q: want zstd, gzip or none", s)
}

// MediaType is the OCI layer media type of a blob so compressed.
func (c Compression) MediaType() string {
	switch c {
	case Gzip:
		return ocispec.MediaTypeImageLayerGzip
	case None:
		return ocispec.MediaTypeImageLayer
	}
	return ocispec.MediaTypeImageLayerZstd
}

// compressor wraps w. level 0 means the compression's default (zstd 3,
// gzip 6); both use every core.
func compressor(w io.Writer, c Compression, level int) (io.WriteCloser, error) {
	switch c {
	case None:
		return nopCloser{w}, nil
	case Gzip:
		if level == 0 {
			level = pgzip.DefaultCompression
		}
		gz, err := pgzip.NewWriterLevel(w, level)
		if err != nil {
			return nil, fmt.Errorf("gzip level %d: %w", level, err)
		}
		// 1 MiB blocks on every core: pgzip's defaults (256 KiB × 16)
		// hold 4 MiB in flight for little gain.
		if err := gz.SetConcurrency(1<<20, runtime.NumCPU()); err != nil {
			return nil, err
		}
		return gz, nil
	case Zstd, "":
		l := zstd.SpeedDefault
		if level != 0 {
			l = zstd.EncoderLevelFromZstd(level)
		}
		return newParallelZstd(w, l, runtime.NumCPU())
	}
	return nil, fmt.Errorf("compression %q: want zstd, gzip or none", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
