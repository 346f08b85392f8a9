package manifest

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxManifestSize bounds manifests read from untrusted sources; distribution
// and containerd use the same 4 MiB limit.
const MaxManifestSize = 4 << 20

// Sentinel errors callers may test with errors.Is.
var (
	ErrNoPlatform = errors.New("platform not found")
	ErrInvalid    = errors.New("invalid manifest")
)

// versioned is the part common to every manifest and index.
type versioned struct {
	SchemaVersion int    `json:"schemaVersion"`
	MediaType     string `json:"mediaType,omitempty"`
	Config        *struct {
		MediaType string `json:"mediaType"`
	} `json:"config,omitempty"`
	Manifests json.RawMessage `json:"manifests,omitempty"`
	Layers    json.RawMessage `json:"layers,omitempty"`
}

// Sniff returns the media type of raw manifest content: the mediaType field
// when present, else whatever its shape says (OCI allows the field to be
// omitted).
func Sniff(raw []byte) (string, error) {
	var v versioned
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if v.SchemaVersion != 2 {
		return "", fmt.Errorf("%w: schemaVersion %d is not supported (only 2; schema 1 images are long deprecated)", ErrInvalid, v.SchemaVersion)
	}
	switch {
	case v.MediaType != "":
		return v.MediaType, nil
	case v.Manifests != nil:
		return ocispec.MediaTypeImageIndex, nil
	case v.Config != nil && v.Config.MediaType == DockerConfig:
		return DockerManifest, nil
	case v.Config != nil:
		return ocispec.MediaTypeImageManifest, nil
	}
	return "", fmt.Errorf("%w: neither a manifest nor an index", ErrInvalid)
}

// Children returns the descriptors that manifest or index content refers to:
// config, layers and subject for a manifest; manifests and subject for an
// index. Each is validated so that a hostile manifest cannot name a path
// through its digest.
func Children(raw []byte, mediaType string) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	switch {
	case IsManifest(mediaType):
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		out = append(out, m.Config)
		out = append(out, m.Layers...)
		if m.Subject != nil {
			out = append(out, *m.Subject)
		}
	case IsIndex(mediaType):
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		out = append(out, idx.Manifests...)
		if idx.Subject != nil {
			out = append(out, *idx.Subject)
		}
	default:
		return nil, nil
	}
	for _, d := range out {
		if err := ValidateDescriptor(d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ValidateDescriptor checks what a descriptor read from untrusted input must
// satisfy before it is used to name or size anything.
func ValidateDescriptor(d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("%w: descriptor digest %q: %v", ErrInvalid, d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%w: descriptor %s has negative size %d", ErrInvalid, d.Digest, d.Size)
	}
	if d.MediaType == "" {
		return fmt.Errorf("%w: descriptor %s has no media type", ErrInvalid, d.Digest)
	}
	if IsManifestOrIndex(d.MediaType) && d.Size > MaxManifestSize {
		return fmt.Errorf("%w: manifest %s is %d bytes, over the %d byte limit", ErrInvalid, d.Digest, d.Size, MaxManifestSize)
	}
	return nil
}

// Describe returns the descriptor of raw manifest content.
func Describe(raw []byte) (ocispec.Descriptor, error) {
	mt, err := Sniff(raw)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(raw), Size: int64(len(raw))}, nil
}
