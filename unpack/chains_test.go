package unpack_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/imgtool/imgtool/unpack"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// put stores raw in m and describes it as mediaType.
func (m *memBlobs) put(mediaType string, raw []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	m.blobs[d.Digest] = raw
	return d
}

func (m *memBlobs) putJSON(t *testing.T, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	raw, err := json.Marshal(v)
	must(t, err)
	return m.put(mediaType, raw)
}

// TestKeepChains: every prefix chain of every platform of an index is
// kept, and an artifact whose config is not an image config is no error.
func TestKeepChains(t *testing.T) {
	b := newBlobs()
	d1, d2, d3 := digest.FromString("layer 1"), digest.FromString("layer 2"), digest.FromString("layer 3")
	image := func(arch string, diffIDs ...digest.Digest) ocispec.Descriptor {
		cfg := b.putJSON(t, ocispec.MediaTypeImageConfig, ocispec.Image{
			Platform: ocispec.Platform{OS: "linux", Architecture: arch},
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
		})
		return b.putJSON(t, ocispec.MediaTypeImageManifest, ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg})
	}
	idx := b.putJSON(t, ocispec.MediaTypeImageIndex, ocispec.Index{MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{image("amd64", d1, d2), image("arm64", d3)}})
	artifact := b.putJSON(t, ocispec.MediaTypeImageManifest, ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
		Config: b.put("application/vnd.example.config", []byte("not json"))})
	keep, err := unpack.KeepChains(context.Background(), b, []ocispec.Descriptor{idx, artifact})
	if err != nil {
		t.Fatalf("KeepChains: %v", err)
	}
	for _, chain := range [][]digest.Digest{{d1}, {d1, d2}, {d3}} {
		if !keep(identity.ChainID(chain)) {
			t.Errorf("chain of %v not kept", chain)
		}
	}
	for _, chain := range [][]digest.Digest{{d2}, {d3, d1}, {d1, d3}} {
		if keep(identity.ChainID(chain)) {
			t.Errorf("chain of %v kept, but no image is made of it", chain)
		}
	}
}
