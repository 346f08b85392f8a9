package manifest

import ocispec "github.com/opencontainers/image-spec/specs-go/v1"

// Docker v2 schema 2 media types, still the most common on registries.
const (
	DockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	DockerConfig       = "application/vnd.docker.container.image.v1+json"
	DockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	DockerLayerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	DockerLayerTar     = "application/vnd.docker.image.rootfs.diff.tar"
)

// IsIndex reports whether mt names a list of manifests (OCI index or Docker
// manifest list).
func IsIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == DockerManifestList
}

// IsManifest reports whether mt names a single image or artifact manifest.
func IsManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == DockerManifest
}

// IsManifestOrIndex reports whether content of type mt refers to further
// content, so that it must be parsed rather than copied as an opaque blob.
func IsManifestOrIndex(mt string) bool { return IsIndex(mt) || IsManifest(mt) }

// IsNonDistributable reports whether a layer of type mt is, by convention,
// not pushed to registries (Windows foreign layers and their OCI spelling).
func IsNonDistributable(mt string) bool {
	switch mt {
	// image-spec deprecated the OCI spellings, but images carrying them
	// are still served, so they are spelled out here.
	case DockerLayerForeign,
		"application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
		return true
	}
	return false
}
