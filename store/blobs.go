package store

import (
	"context"
	_ "crypto/sha256" // register digest algorithms with go-digest
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Blobs is content-addressed storage. Implementations must never expose
// content under a digest it does not hash to.
type Blobs interface {
	// Open returns the content of d. Reading it to EOF fails if the content
	// no longer hashes to d.
	Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
	// Stat returns the size of d, or an error wrapping ErrNotFound.
	Stat(ctx context.Context, d digest.Digest) (int64, error)
	// Writer starts writing a blob; nothing is visible until Commit.
	Writer(ctx context.Context) (Writer, error)
}

// Verifying is the capability of a reader Open returns that checks the
// content itself: reading it to EOF fails, wrapping ErrMismatch, unless
// it hashed to VerifiesDigest. A reader that would hash the blob again
// (unpack) skips that when the reader has it.
type Verifying interface {
	VerifiesDigest() digest.Digest
}

// Writer is an ingest in progress.
type Writer interface {
	io.Writer
	// Commit checks the content against want (its digest, and its size when
	// not zero), makes it durable and visible, and returns its descriptor.
	// On a mismatch nothing becomes visible and the error wraps ErrMismatch.
	Commit(ctx context.Context, want ocispec.Descriptor) (ocispec.Descriptor, error)
	// Cancel discards the ingest. It is idempotent and safe after Commit,
	// so that it can be deferred.
	Cancel() error
}

func (s *Store) blobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("blob %q: %w", d, err)
	}
	return filepath.Join(s.dir, "blobs", d.Algorithm().String(), d.Encoded()), nil
}

// Open implements Blobs.
func (s *Store) Open(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open blob %s: %w", d, ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	return &verifyReader{f: f, want: d, v: d.Verifier()}, nil
}

// Stat implements Blobs.
func (s *Store) Stat(_ context.Context, d digest.Digest) (int64, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("stat blob %s: %w", d, ErrNotFound)
	} else if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return fi.Size(), nil
}

// Delete removes a blob. Deleting a missing blob is not an error.
func (s *Store) Delete(_ context.Context, d digest.Digest) error {
	if s.readOnly {
		return fmt.Errorf("delete blob %s: %w", d, errReadOnly)
	}
	p, err := s.blobPath(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every blob in the store.
func (s *Store) Walk(ctx context.Context, fn func(digest.Digest, int64) error) error {
	algs, err := os.ReadDir(filepath.Join(s.dir, "blobs"))
	if err != nil {
		return fmt.Errorf("walk blobs: %w", err)
	}
	for _, alg := range algs {
		if !alg.IsDir() || !digest.Algorithm(alg.Name()).Available() {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(s.dir, "blobs", alg.Name()))
		if err != nil {
			return fmt.Errorf("walk blobs: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
			if d.Validate() != nil || !e.Type().IsRegular() {
				continue // not ours: leave it alone
			}
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			if err := fn(d, info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

// Writer implements Blobs. The ingest is hashed with sha256 as it is
// written; Commit rehashes only for other algorithms.
func (s *Store) Writer(_ context.Context) (Writer, error) {
	if s.readOnly {
		return nil, fmt.Errorf("start blob write in %s: %w", s.dir, errReadOnly)
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, ".imgtool", "ingest"), "blob-*")
	if err != nil {
		return nil, fmt.Errorf("start blob write: %w", err)
	}
	return &fileWriter{s: s, f: f, d: digest.SHA256.Digester()}, nil
}

// Put writes r as the blob want, reading at most want.Size bytes from r.
// It is a no-op when the blob is already present.
func Put(ctx context.Context, b Blobs, want ocispec.Descriptor, r io.Reader) error {
	if _, err := b.Stat(ctx, want.Digest); err == nil {
		return nil
	}
	w, err := b.Writer(ctx)
	if err != nil {
		return err
	}
	defer w.Cancel()
	if _, err := io.Copy(w, io.LimitReader(r, want.Size+1)); err != nil {
		return fmt.Errorf("write blob %s: %w", want.Digest, err)
	}
	_, err = w.Commit(ctx, want)
	return err
}

type verifyReader struct {
	f    *os.File
	want digest.Digest
	v    digest.Verifier
}

func (r *verifyReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.v.Write(p[:n])
	if err == io.EOF && !r.v.Verified() {
		return n, fmt.Errorf("read blob %s: %w (the store is corrupt: remove the file and pull again)", r.want, ErrMismatch)
	}
	return n, err
}

func (r *verifyReader) Close() error { return r.f.Close() }

// VerifiesDigest implements Verifying.
func (r *verifyReader) VerifiesDigest() digest.Digest { return r.want }
