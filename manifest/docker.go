package manifest

import (
	"errors"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrDockerIncompatible reports content that a Docker v2 schema 2 manifest
// cannot express. Callers can suggest rebuilding with --compression gzip or
// keeping OCI media types.
var ErrDockerIncompatible = errors.New("no Docker v2 schema 2 equivalent")

// ociNondistributableGzip is image-spec's deprecated spelling of a foreign
// layer; spelled out because the constant is deprecated.
const ociNondistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

// ociToDockerLayer maps the layer media types a Docker manifest can carry
// to their Docker spelling (Docker's own map to themselves). zstd is absent
// on purpose: containerd and cri-o refuse a Docker v2 manifest with zstd
// layers (DESIGN.md), so such an image must stay OCI.
var ociToDockerLayer = map[string]string{
	ocispec.MediaTypeImageLayer:     DockerLayerTar,
	ocispec.MediaTypeImageLayerGzip: DockerLayerGzip,
	ociNondistributableGzip:         DockerLayerForeign,
	DockerLayerTar:                  DockerLayerTar,
	DockerLayerGzip:                 DockerLayerGzip,
	DockerLayerForeign:              DockerLayerForeign,
}

// dockerToOCILayer maps Docker layer media types to OCI's; OCI types map to
// themselves, so that a Docker manifest that wrongly carries zstd layers
// comes out as the valid OCI image it should have been.
var dockerToOCILayer = map[string]string{
	DockerLayerTar:                  ocispec.MediaTypeImageLayer,
	DockerLayerGzip:                 ocispec.MediaTypeImageLayerGzip,
	DockerLayerForeign:              ociNondistributableGzip,
	ocispec.MediaTypeImageLayer:     ocispec.MediaTypeImageLayer,
	ocispec.MediaTypeImageLayerGzip: ocispec.MediaTypeImageLayerGzip,
	ocispec.MediaTypeImageLayerZstd: ocispec.MediaTypeImageLayerZstd,
	ociNondistributableGzip:         ociNondistributableGzip,
}

// ToDocker re-encodes an OCI image manifest with Docker v2 schema 2 media
// types, for docker-archive output and registries that refuse OCI types.
// Blobs are unchanged (the config's JSON is the same in both worlds); only
// the manifest, and so its digest, changes. It refuses zstd layers, a
// subject or an artifact type, none of which Docker v2 can carry. A manifest
// that already has Docker types comes back re-encoded, otherwise unchanged.
func ToDocker(m ocispec.Manifest) (Blob, error) {
	return convert(m, DockerManifest, DockerConfig, ociToDockerLayer, "convert manifest to Docker v2")
}

// FromDocker re-encodes a Docker v2 schema 2 manifest with OCI media types,
// for storing images read from docker-archive or Docker-only registries.
func FromDocker(m ocispec.Manifest) (Blob, error) {
	return convert(m, ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, dockerToOCILayer, "convert manifest to OCI")
}

// convert rewrites m's media types: the config's and, through layerTypes,
// each layer's. A layer type missing from layerTypes is refused, since
// guessing would make a manifest that clients reject or misread.
func convert(m ocispec.Manifest, manifestType, configType string, layerTypes map[string]string, op string) (Blob, error) {
	toDocker := manifestType == DockerManifest
	if m.MediaType != "" && !IsManifest(m.MediaType) {
		return Blob{}, fmt.Errorf("%s: %w: media type %s is not an image manifest", op, ErrInvalid, m.MediaType)
	}
	if toDocker && m.Subject != nil {
		return Blob{}, fmt.Errorf("%s: %w: the manifest refers to %s as its subject, and a Docker manifest cannot", op, ErrDockerIncompatible, m.Subject.Digest)
	}
	if toDocker && m.ArtifactType != "" {
		return Blob{}, fmt.Errorf("%s: %w: the manifest is an artifact of type %s, not an image", op, ErrDockerIncompatible, m.ArtifactType)
	}
	out := m
	switch m.Config.MediaType {
	case ocispec.MediaTypeImageConfig, DockerConfig:
		out.Config.MediaType = configType
	default:
		return Blob{}, fmt.Errorf("%s: %w: config media type %s is not an image config", op, errFor(toDocker), m.Config.MediaType)
	}
	out.Layers = make([]ocispec.Descriptor, len(m.Layers))
	for i, l := range m.Layers {
		mt, ok := layerTypes[l.MediaType]
		if !ok {
			hint := ""
			if l.MediaType == ocispec.MediaTypeImageLayerZstd {
				hint = " (containerd and cri-o refuse zstd layers in a Docker manifest; rebuild with --compression gzip, or keep OCI media types)"
			}
			return Blob{}, fmt.Errorf("%s: %w: layer %d (%s) has media type %s%s", op, errFor(toDocker), i, l.Digest, l.MediaType, hint)
		}
		out.Layers[i] = l
		out.Layers[i].MediaType = mt
	}
	out.MediaType = manifestType
	out.SchemaVersion = 2
	return newBlob(manifestType, out)
}

// errFor is the sentinel for content a conversion cannot map: Docker's
// limits when converting to Docker, plain invalid input otherwise.
func errFor(toDocker bool) error {
	if toDocker {
		return ErrDockerIncompatible
	}
	return ErrInvalid
}

// ToDockerIndex re-encodes an OCI index as a Docker manifest list. Entries
// must already be Docker manifests (convert each with ToDocker and put the
// new descriptor in its place): relabelling an entry would leave it naming
// content of another type, under a digest that no longer matches. Docker
// requires a platform on every entry.
func ToDockerIndex(idx ocispec.Index) (Blob, error) {
	const op = "convert index to Docker manifest list"
	if idx.Subject != nil || idx.ArtifactType != "" {
		return Blob{}, fmt.Errorf("%s: %w: the index has a subject or artifact type", op, ErrDockerIncompatible)
	}
	for i, d := range idx.Manifests {
		if d.MediaType != DockerManifest {
			return Blob{}, fmt.Errorf("%s: %w: entry %d (%s) has media type %s; convert it with ToDocker first, or leave attestations and other artifacts out",
				op, ErrDockerIncompatible, i, d.Digest, d.MediaType)
		}
		if d.Platform == nil {
			return Blob{}, fmt.Errorf("%s: %w: entry %d (%s) has no platform, which a Docker manifest list requires", op, ErrDockerIncompatible, i, d.Digest)
		}
	}
	return relabelIndex(idx, DockerManifestList, op)
}

// FromDockerIndex re-encodes a Docker manifest list as an OCI index. As with
// ToDockerIndex, its entries must already have been converted.
func FromDockerIndex(idx ocispec.Index) (Blob, error) {
	const op = "convert manifest list to OCI index"
	for i, d := range idx.Manifests {
		if d.MediaType != ocispec.MediaTypeImageManifest && d.MediaType != ocispec.MediaTypeImageIndex {
			return Blob{}, fmt.Errorf("%s: %w: entry %d (%s) has media type %s; convert it with FromDocker first", op, ErrInvalid, i, d.Digest, d.MediaType)
		}
	}
	return relabelIndex(idx, ocispec.MediaTypeImageIndex, op)
}

func relabelIndex(idx ocispec.Index, mt, op string) (Blob, error) {
	if idx.MediaType != "" && !IsIndex(idx.MediaType) {
		return Blob{}, fmt.Errorf("%s: %w: media type %s is not an index", op, ErrInvalid, idx.MediaType)
	}
	for i, d := range idx.Manifests {
		if err := ValidateDescriptor(d); err != nil {
			return Blob{}, fmt.Errorf("%s: entry %d: %w", op, i, err)
		}
	}
	idx.MediaType = mt
	idx.SchemaVersion = 2
	idx.Manifests = append([]ocispec.Descriptor{}, idx.Manifests...)
	return newBlob(mt, idx)
}
