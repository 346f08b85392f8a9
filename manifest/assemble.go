package manifest

import (
	"encoding/json"
	"fmt"
	"slices"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Blob is content ready to be written to a store: its bytes and the
// descriptor that names them.
type Blob struct {
	Descriptor ocispec.Descriptor
	Data       []byte
}

// newBlob encodes v and describes the result as media type mt. Encoding is
// deterministic (struct fields in declaration order, map keys sorted), which
// is what makes the same inputs give the same digests.
func newBlob(mt string, v any) (Blob, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return Blob{}, fmt.Errorf("encode %s: %w", mt, err)
	}
	return Blob{Descriptor: ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(raw), Size: int64(len(raw))}, Data: raw}, nil
}

// ImageBlobs are the two blobs that make an image out of its layers. Write
// Config before Manifest, so that a store never holds a manifest whose
// config is missing.
type ImageBlobs struct {
	Manifest Blob // its Descriptor carries the image's platform, ready for an index
	Config   Blob
}

// ImageOptions are the optional parts of an image manifest.
type ImageOptions struct {
	Annotations map[string]string
	// Subject makes the image a referrer of another manifest (OCI 1.1).
	Subject *ocispec.Descriptor
}

// Image encodes cfg and an OCI image manifest over layers. layers must be
// the image's layers in order, the i-th with the i-th diff_id of cfg, and
// cfg must satisfy what ParseConfig checks plus one rule for written
// configs: when it has history, its entries that are not empty layers
// number the same as its diff_ids.
func Image(cfg ocispec.Image, layers []LayerDesc, opts ImageOptions) (ImageBlobs, error) {
	return image(cfg, func(c ocispec.Image) any { return c }, layers, opts)
}

// DockerImage is Image for a config with the fields Docker keeps beside
// the OCI ones (Healthcheck, OnBuild, Shell), which a Dockerfile build
// must not lose. cfg.Config is the runtime config written; the embedded
// cfg.Image.Config is ignored.
func DockerImage(cfg dockerspec.DockerOCIImage, layers []LayerDesc, opts ImageOptions) (ImageBlobs, error) {
	check := cfg.Image
	check.Config = cfg.Config.ImageConfig
	return image(check, func(c ocispec.Image) any {
		out := cfg
		out.Image = c
		out.Image.Config = ocispec.ImageConfig{} // shadowed by out.Config in the JSON
		return out
	}, layers, opts)
}

// image checks cfg and encodes what encode makes of it (after defaults
// are filled in) with the manifest over layers.
func image(cfg ocispec.Image, encode func(ocispec.Image) any, layers []LayerDesc, opts ImageOptions) (ImageBlobs, error) {
	if err := checkConfig(cfg); err != nil {
		return ImageBlobs{}, fmt.Errorf("assemble image: %w", err)
	}
	if n := layerEntries(cfg.History); len(cfg.History) > 0 && n != len(cfg.RootFS.DiffIDs) {
		return ImageBlobs{}, fmt.Errorf("assemble image: %w: history describes %d layers, rootfs has %d diff_ids", ErrInvalid, n, len(cfg.RootFS.DiffIDs))
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return ImageBlobs{}, fmt.Errorf("assemble image: %w: %d layers for %d diff_ids", ErrInvalid, len(layers), len(cfg.RootFS.DiffIDs))
	}
	descs := make([]ocispec.Descriptor, len(layers)) // not nil: "layers" must encode as [], never null
	for i, l := range layers {
		if l.DiffID != cfg.RootFS.DiffIDs[i] {
			return ImageBlobs{}, fmt.Errorf("assemble image: %w: layer %d has diff_id %s, config lists %s", ErrInvalid, i, l.DiffID, cfg.RootFS.DiffIDs[i])
		}
		if err := ValidateDescriptor(l.Descriptor); err != nil {
			return ImageBlobs{}, fmt.Errorf("assemble image: layer %d: %w", i, err)
		}
		if IsManifestOrIndex(l.MediaType) {
			return ImageBlobs{}, fmt.Errorf("assemble image: %w: layer %d has manifest media type %s", ErrInvalid, i, l.MediaType)
		}
		descs[i] = l.Descriptor
	}
	if opts.Subject != nil {
		if err := ValidateDescriptor(*opts.Subject); err != nil {
			return ImageBlobs{}, fmt.Errorf("assemble image: subject: %w", err)
		}
	}
	if cfg.RootFS.DiffIDs == nil {
		cfg.RootFS.DiffIDs = []digest.Digest{} // image-spec wants [] for no layers, not null
	}
	config, err := newBlob(ocispec.MediaTypeImageConfig, encode(cfg))
	if err != nil {
		return ImageBlobs{}, fmt.Errorf("assemble image: %w", err)
	}
	m := ocispec.Manifest{
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      config.Descriptor,
		Layers:      descs,
		Subject:     opts.Subject,
		Annotations: opts.Annotations,
	}
	m.SchemaVersion = 2
	man, err := newBlob(ocispec.MediaTypeImageManifest, m)
	if err != nil {
		return ImageBlobs{}, fmt.Errorf("assemble image: %w", err)
	}
	p := cfg.Platform
	p.OSFeatures = slices.Clone(p.OSFeatures)
	man.Descriptor.Platform = &p
	return ImageBlobs{Manifest: man, Config: config}, nil
}

// Index encodes an OCI image index over manifests (each as Image or
// Describe returned it; keep their platforms so that clients can choose).
func Index(manifests []ocispec.Descriptor, annotations map[string]string) (Blob, error) {
	for i, d := range manifests {
		if err := ValidateDescriptor(d); err != nil {
			return Blob{}, fmt.Errorf("assemble index: manifest %d: %w", i, err)
		}
	}
	idx := ocispec.Index{
		MediaType:   ocispec.MediaTypeImageIndex,
		Manifests:   append([]ocispec.Descriptor{}, manifests...), // [] rather than null when empty
		Annotations: annotations,
	}
	idx.SchemaVersion = 2
	b, err := newBlob(ocispec.MediaTypeImageIndex, idx)
	if err != nil {
		return Blob{}, fmt.Errorf("assemble index: %w", err)
	}
	return b, nil
}
