package unpack

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxTrailing bounds the bytes after the tar's end marker that are read
// to finish the diffID check (tar writers pad to 10 KiB records).
const maxTrailing = 1 << 20

// blobCheck checks a blob against its descriptor while it is read
// through src: its size, and its digest, hashed here unless the reader
// verifies it itself (store.Verifying: a blob of the store is then not
// hashed twice).
type blobCheck struct {
	d   ocispec.Descriptor
	raw *countingReader
	src io.Reader
	v   digest.Verifier // nil when there is no digest or the reader checks it
	// self: the reader fails at EOF unless the blob hashes to d.Digest.
	self bool
}

func newBlobCheck(blob io.Reader, d ocispec.Descriptor) (*blobCheck, error) {
	raw := &countingReader{r: blob}
	bc := &blobCheck{d: d, raw: raw, src: raw}
	if d.Digest == "" {
		return bc, nil
	}
	if err := d.Digest.Validate(); err != nil {
		return nil, err
	}
	if v, ok := blob.(store.Verifying); ok && v.VerifiesDigest() == d.Digest {
		bc.self = true
		return bc, nil
	}
	bc.v = d.Digest.Verifier()
	bc.src = io.TeeReader(raw, bc.v)
	return bc, nil
}

// rest reads what is left of the blob, one byte past its size if known
// (so that a longer blob shows), to its end otherwise when the reader
// checks the digest at EOF.
func (bc *blobCheck) rest() error {
	var r io.Reader
	switch {
	case bc.d.Size > 0:
		r = io.LimitReader(bc.src, bc.d.Size-bc.raw.n+1)
	case bc.self:
		r = bc.src
	default:
		return nil
	}
	_, err := io.Copy(io.Discard, r)
	return err
}

// finish reads the rest of the blob and checks its size and digest.
func (bc *blobCheck) finish() error {
	if err := bc.rest(); err != nil {
		return err
	}
	if bc.d.Size > 0 && bc.raw.n != bc.d.Size {
		return fmt.Errorf("%w: blob is %d bytes or more, descriptor says %d", store.ErrMismatch, bc.raw.n, bc.d.Size)
	}
	if bc.v != nil && !bc.v.Verified() {
		return fmt.Errorf("%w: blob does not hash to %s", store.ErrMismatch, bc.d.Digest)
	}
	return nil
}

// corrupt reports a failure as a digest mismatch when the blob is not the
// one its descriptor names (garbage appended, bytes flipped): that, not
// the decompressor's complaint about it, is what the user must act on.
func (bc *blobCheck) corrupt(err error) error {
	if bc.v == nil && !bc.self || bc.d.Size <= 0 || errors.Is(err, store.ErrMismatch) || errors.Is(err, context.Canceled) {
		return err
	}
	if rerr := bc.rest(); rerr != nil {
		if errors.Is(rerr, store.ErrMismatch) {
			return fmt.Errorf("%w (%v)", rerr, err)
		}
		return err
	}
	if bc.raw.n != bc.d.Size || bc.v != nil && !bc.v.Verified() {
		return fmt.Errorf("%w: blob does not hash to %s (%v)", store.ErrMismatch, bc.d.Digest, err)
	}
	return err
}

// drainTrailing reads what follows the tar's end marker, bounded, so that
// the whole uncompressed stream is hashed.
func drainTrailing(tarSrc io.Reader) error {
	n, err := io.Copy(io.Discard, io.LimitReader(tarSrc, maxTrailing+1))
	if err != nil {
		return err
	}
	if n > maxTrailing {
		return fmt.Errorf("%w: more than %d bytes after the end of the tar", ErrLimit, maxTrailing)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
