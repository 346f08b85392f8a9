package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fileWriter streams into a temporary file under .imgtool/ingest and
// renames it into blobs/ once it is verified (the umoci oci/cas/dir way).
type fileWriter struct {
	s    *Store
	f    *os.File
	d    digest.Digester
	n    int64
	done bool
}

func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.d.Hash().Write(p[:n])
	w.n += int64(n)
	return n, err
}

func (w *fileWriter) Commit(_ context.Context, want ocispec.Descriptor) (ocispec.Descriptor, error) {
	if w.done {
		return ocispec.Descriptor{}, errors.New("commit blob: writer already closed")
	}
	defer w.Cancel()
	got := w.d.Digest()
	if want.Digest != "" && want.Digest.Algorithm() != digest.SHA256 {
		var err error
		if got, err = w.rehash(want.Digest.Algorithm()); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	if want.Size != 0 && want.Size != w.n {
		return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w: size %d, want %d", want.Digest, ErrMismatch, w.n, want.Size)
	}
	if want.Digest != "" && want.Digest != got {
		return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w: content hashes to %s", want.Digest, ErrMismatch, got)
	}
	if err := w.f.Sync(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w", got, err)
	}
	final, err := w.s.blobPath(got)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w", got, err)
	}
	if err := w.f.Chmod(0o644); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w", got, err)
	}
	if err := os.Rename(w.f.Name(), final); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w", got, err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w", got, err)
	}
	out := want
	out.Digest, out.Size = got, w.n
	return out, nil
}

func (w *fileWriter) rehash(alg digest.Algorithm) (digest.Digest, error) {
	if !alg.Available() {
		return "", fmt.Errorf("commit blob: digest algorithm %q is not supported", alg)
	}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("commit blob: %w", err)
	}
	d, err := alg.FromReader(w.f)
	if err != nil {
		return "", fmt.Errorf("commit blob: %w", err)
	}
	return d, nil
}

func (w *fileWriter) Cancel() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cancel blob write: %w", err)
	}
	return nil
}
