package manifest

import (
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// LayerDesc is a written layer: the descriptor of its blob (as stored and
// pushed, usually compressed) and the digest of its uncompressed tar, which
// is what the image config lists in rootfs.diff_ids. Both come out of
// layer.Write together, so nothing ever has to decompress a blob again to
// learn its DiffID.
type LayerDesc struct {
	ocispec.Descriptor
	DiffID digest.Digest
}

// Layers pairs the layers of a manifest with the diff_ids of its config,
// so that an image read from a store can be the base of a new one. It fails
// if the two disagree in number, since every later step relies on the
// i-th layer being the i-th diff_id.
func Layers(m ocispec.Manifest, cfg ocispec.Image) ([]LayerDesc, error) {
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("pair layers with diff_ids: %w: manifest has %d layers, config has %d diff_ids",
			ErrInvalid, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	out := make([]LayerDesc, len(m.Layers))
	for i, d := range m.Layers {
		if err := ValidateDescriptor(d); err != nil {
			return nil, fmt.Errorf("pair layers with diff_ids: layer %d: %w", i, err)
		}
		if err := cfg.RootFS.DiffIDs[i].Validate(); err != nil {
			return nil, fmt.Errorf("pair layers with diff_ids: %w: diff_id %d %q: %v", ErrInvalid, i, cfg.RootFS.DiffIDs[i], err)
		}
		out[i] = LayerDesc{Descriptor: d, DiffID: cfg.RootFS.DiffIDs[i]}
	}
	return out, nil
}
