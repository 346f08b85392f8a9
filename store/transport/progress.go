package transport

import (
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Progress receives the progress of each blob of a copy. Implementations
// must be safe for concurrent use: blobs move in parallel.
type Progress interface {
	Blob(d ocispec.Descriptor) BlobProgress
}

// BlobProgress follows one blob.
type BlobProgress interface {
	// Skipped says the blob was not sent, and why ("exists").
	Skipped(reason string)
	// Add counts n more bytes moved. Retries may count bytes again.
	Add(n int64)
	// Done ends the blob, with the error that stopped it, if any.
	Done(err error)
}

type nopProgress struct{}

func (nopProgress) Blob(ocispec.Descriptor) BlobProgress { return nopProgress{} }
func (nopProgress) Skipped(string)                       {}
func (nopProgress) Add(int64)                            {}
func (nopProgress) Done(error)                           {}

// countingReader reports bytes read to a BlobProgress.
type countingReader struct {
	io.ReadCloser
	p BlobProgress
}

func (r countingReader) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	r.p.Add(int64(n))
	return n, err
}
