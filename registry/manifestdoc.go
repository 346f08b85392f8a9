package registry

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/imgtool/imgtool/manifest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// manifestDoc is the part of any accepted manifest the registry acts on.
type manifestDoc struct {
	MediaType    string
	ArtifactType string               `json:"artifactType,omitempty"`
	Config       *ocispec.Descriptor  `json:"config,omitempty"`
	Layers       []ocispec.Descriptor `json:"layers,omitempty"`
	Manifests    []ocispec.Descriptor `json:"manifests,omitempty"`
	Subject      *ocispec.Descriptor  `json:"subject,omitempty"`
	Annotations  map[string]string    `json:"annotations,omitempty"`
}

// parseManifest validates manifest content pushed with Content-Type
// contentType (when that is not a manifest type: whatever the content says): one of the four media
// types clients push, structurally sound, every descriptor well formed.
func parseManifest(body []byte, contentType string) (*manifestDoc, error) {
	invalid := func(err error) error { return newError(errManifestInvalid, "%v", err) }
	sniffed, err := manifest.Sniff(body)
	if err != nil {
		return nil, invalid(err)
	}
	var raw struct {
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, invalid(err)
	}
	mt := contentType
	switch {
	case mt == "" || !manifest.IsManifestOrIndex(mt):
		// Clients that send application/json (or nothing) get what the
		// content says.
		mt = sniffed
	case raw.MediaType != "" && raw.MediaType != mt:
		return nil, newError(errManifestInvalid, "manifest says mediaType %s but was pushed as %s", raw.MediaType, mt)
	}
	if !manifest.IsManifestOrIndex(mt) {
		return nil, newError(errManifestInvalid, "unsupported manifest media type %q", mt)
	}
	if _, err := manifest.Children(body, mt); err != nil {
		return nil, invalid(err)
	}
	m := &manifestDoc{}
	if err := json.Unmarshal(body, m); err != nil {
		return nil, invalid(err)
	}
	m.MediaType = mt
	if manifest.IsManifest(mt) && (m.Config == nil || m.Manifests != nil) {
		return nil, newError(errManifestInvalid, "an image manifest needs a config and no manifests")
	}
	if manifest.IsIndex(mt) && (m.Config != nil || m.Layers != nil) {
		return nil, newError(errManifestInvalid, "an index has manifests, not a config or layers")
	}
	return m, nil
}

// checkReferences refuses a manifest whose blobs or child manifests are
// not in the repository, unless the registry allows sparse manifests.
// Non-distributable layers are by definition never pushed.
func (g *Registry) checkReferences(ctx context.Context, name string, m *manifestDoc) error {
	if g.opts.AllowSparse {
		return nil
	}
	var ae *apiError
	if m.Config != nil {
		for _, d := range append([]ocispec.Descriptor{*m.Config}, m.Layers...) {
			if manifest.IsNonDistributable(d.MediaType) {
				continue
			}
			if _, err := g.blobSize(ctx, name, d.Digest); errors.As(err, &ae) {
				return newError(errManifestBlobUnknown, "blob %s is not in %s; push it before the manifest", d.Digest, name)
			} else if err != nil {
				return err
			}
		}
	}
	for _, d := range m.Manifests {
		if _, err := g.revision(ctx, name, d.Digest); errors.As(err, &ae) {
			return newError(errManifestBlobUnknown, "manifest %s is not in %s; push it before the index", d.Digest, name)
		} else if err != nil {
			return err
		}
		// The child's content too, not only its revision: a revision
		// without content (storage damaged by hand, or a collection bug)
		// must not be named by a new index that would then not pull.
		if _, err := g.globalBlobSize(ctx, d.Digest); errors.As(err, &ae) {
			return newError(errManifestBlobUnknown, "manifest %s of %s has lost its content; push it again before the index", d.Digest, name)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// referrer is the descriptor the referrers API lists for this manifest:
// its artifactType, or for an image manifest without one its config's
// media type, as the spec says.
func (m *manifestDoc) referrer(desc ocispec.Descriptor) ocispec.Descriptor {
	desc.ArtifactType = m.ArtifactType
	if desc.ArtifactType == "" && m.Config != nil {
		desc.ArtifactType = m.Config.MediaType
	}
	desc.Annotations = m.Annotations
	return desc
}
