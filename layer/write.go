package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"github.com/imgtool/imgtool/manifest"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Options tune Write.
type Options struct {
	// Compression of the blob (zero: Zstd).
	Compression Compression
	// Level of compression (zero: the compression's default).
	Level int
	// SourceDateEpoch, when set, clamps every mtime to it, as
	// SOURCE_DATE_EPOCH asks of reproducible builds.
	SourceDateEpoch *time.Time
	// Rootless writes files owned by the (unprivileged) caller as owned by
	// root, as a user namespace mapping the caller to root shows them, so
	// that a tree unpacked without privilege (owners other than root kept
	// in the user.rootlesscontainers xattr) round-trips.
	Rootless bool
	// Tee, when set, receives the uncompressed tar as it is written: an
	// unpacker that makes the layer's files at the same time (a build
	// whose next step needs them) reads it while the blob is compressed.
	// An error from it fails the write.
	Tee io.Writer
}

// Write writes the layer that changes ch make to the tree at root into w,
// and describes it. The tar, its hash, the compression and the blob's hash
// happen in one pass; nothing is held in memory beyond a few buffers.
func Write(ctx context.Context, w io.Writer, root string, ch Changes, o Options) (manifest.LayerDesc, error) {
	p, err := newPipeline(w, o)
	if err != nil {
		return manifest.LayerDesc{}, err
	}
	if err := writeEntries(ctx, p.tw, root, ch, o); err != nil {
		p.abort()
		return manifest.LayerDesc{}, fmt.Errorf("write layer from %s: %w", root, err)
	}
	d, err := p.finish()
	if err != nil {
		return manifest.LayerDesc{}, fmt.Errorf("write layer from %s: %w", root, err)
	}
	return d, nil
}

// pipeline is tar → (diffID hash) → compressor → (digest hash, size) → w.
type pipeline struct {
	tw       *tar.Writer
	buf      *asyncWriter
	cw       io.WriteCloser
	mt       string
	diffHash digest.Digester
	blobHash digest.Digester
	blobSize *counter
}

func newPipeline(w io.Writer, o Options) (*pipeline, error) {
	if o.Compression == "" {
		o.Compression = Zstd
	}
	p := &pipeline{mt: o.Compression.MediaType(), diffHash: digest.SHA256.Digester(), blobHash: digest.SHA256.Digester(), blobSize: &counter{}}
	var err error
	if p.cw, err = compressor(io.MultiWriter(w, p.blobHash.Hash(), p.blobSize), o.Compression, o.Level); err != nil {
		return nil, err
	}
	// Batch the tar's small writes (512-byte headers), and hash and
	// compress on another goroutine while the next files are read.
	ws := []io.Writer{p.cw, p.diffHash.Hash()}
	if o.Tee != nil {
		ws = append(ws, o.Tee)
	}
	p.buf = newAsyncWriter(io.MultiWriter(ws...))
	p.tw = tar.NewWriter(p.buf)
	return p, nil
}

func (p *pipeline) abort() {
	p.buf.Close()
	p.cw.Close()
}

func (p *pipeline) finish() (manifest.LayerDesc, error) {
	for _, step := range []func() error{p.tw.Close, p.buf.Close, p.cw.Close} {
		if err := step(); err != nil {
			return manifest.LayerDesc{}, err
		}
	}
	return manifest.LayerDesc{
		Descriptor: ocispec.Descriptor{MediaType: p.mt, Digest: p.blobHash.Digest(), Size: p.blobSize.n},
		DiffID:     p.diffHash.Digest(),
	}, nil
}

func writeEntries(ctx context.Context, tw *tar.Writer, root string, ch Changes, o Options) error {
	epoch := o.SourceDateEpoch
	caller := -1
	if o.Rootless {
		caller = os.Geteuid()
	}
	root = filepath.Clean(root)
	links := map[devIno]string{}
	copyBuf := make([]byte, 256<<10)
	for {
		c, err := ch.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.Kind == Delete {
			if err := tw.WriteHeader(whiteout(c.Path, false, epoch)); err != nil {
				return err
			}
			continue
		}
		h, err := headerFor(root, c.Path, links, epoch, caller)
		if err != nil {
			return err
		}
		if h == nil {
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", c.Path, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if err := copyFile(tw, root+"/"+c.Path, h.Size, copyBuf); err != nil {
				return fmt.Errorf("%s: %w", c.Path, err)
			}
		}
		if c.Kind == Replace && h.Typeflag == tar.TypeDir {
			if err := tw.WriteHeader(whiteout(c.Path, true, epoch)); err != nil {
				return err
			}
		}
	}
}

// copyFile copies exactly size bytes of a regular file, refusing to follow
// a symlink swapped in since it was stat'ed.
func copyFile(w io.Writer, p string, size int64, buf []byte) error {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyBuffer(w, io.LimitReader(f, size), buf)
	if err != nil {
		return err
	}
	if n != size {
		return errors.New("file shrank while it was being read")
	}
	return nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
