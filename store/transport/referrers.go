package transport

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReferrersSource is a Source that can list what refers to a manifest
// (signatures, SBOMs, attestations).
type ReferrersSource interface {
	// Referrers returns the images that refer to manifest d, each named
	// as it should be kept: by digest for OCI referrers, by tag for
	// cosign's tag-based signatures.
	Referrers(ctx context.Context, d ocispec.Descriptor) ([]store.Image, error)
}

// cosignSuffixes are the tags cosign (before OCI 1.1 referrers) attaches
// to sha256-<hex>: signatures, attestations, SBOMs.
var cosignSuffixes = []string{".sig", ".att", ".sbom"}

// Referrers asks the registry's referrers API, or, when it has none, the
// sha256-<hex> tag the OCI spec falls back to (go-containerregistry does
// both), then looks for cosign's sha256-<hex>.sig/.att/.sbom tags.
func (r *remoteSource) Referrers(ctx context.Context, d ocispec.Descriptor) ([]store.Image, error) {
	repo := r.ref.Context()
	subject := repo.Digest(d.Digest.String())
	idx, err := remote.Referrers(subject, append(r.opts, remote.WithContext(ctx), remote.Reuse(r.puller))...)
	if err != nil {
		return nil, explainRemote("list referrers of", subject, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, explainRemote("list referrers of", subject, err)
	}
	var out []store.Image
	for _, desc := range im.Manifests {
		od := ociDescriptor(desc)
		if err := manifest.ValidateDescriptor(od); err != nil {
			return nil, fmt.Errorf("list referrers of %s: %w", subject, err)
		}
		if !manifest.IsManifestOrIndex(od.MediaType) {
			continue
		}
		od.Annotations, od.ArtifactType = nil, ""
		out = append(out, store.Image{Name: store.Canonical(repo.Digest(od.Digest.String())), Descriptor: od})
	}
	base := strings.Replace(d.Digest.String(), ":", "-", 1)
	for _, suffix := range cosignSuffixes {
		tag := repo.Tag(base + suffix)
		desc, err := r.puller.Head(ctx, tag)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, explainRemote("look for", tag, err)
		}
		od := ociDescriptor(*desc)
		if !manifest.IsManifestOrIndex(od.MediaType) {
			continue
		}
		out = append(out, store.Image{Name: store.Canonical(tag), Descriptor: od})
	}
	return out, nil
}
