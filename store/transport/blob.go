package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/imgtool/imgtool/manifest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// blobLayer shows one blob to go-containerregistry's uploader as a
// v1.Layer whose bytes are only opened if the registry lacks it.
type blobLayer struct {
	d      ocispec.Descriptor
	open   Opener
	opened atomic.Bool
}

func (l *blobLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.d.Digest.String()) }
func (l *blobLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{}, errors.New("blob layer: diffID unknown")
}
func (l *blobLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) { return types.MediaType(l.d.MediaType), nil }
func (l *blobLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("blob layer: uncompressed content not available")
}

func (l *blobLayer) Compressed() (io.ReadCloser, error) {
	l.opened.Store(true)
	return l.open()
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// readAll reads a manifest through open, bounded.
func readAll(open Opener) ([]byte, error) {
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, manifest.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return raw, nil
}
