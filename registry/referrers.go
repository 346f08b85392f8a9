package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func (g *Registry) getReferrers(w http.ResponseWriter, r *http.Request, rt route) error {
	subject, err := parseDigest(rt.ref)
	if err != nil {
		return newError(errDigestInvalid, "referrers of %q: %v", rt.ref, err)
	}
	refs, err := g.referrers(r.Context(), rt.name, subject)
	if err != nil {
		return err
	}
	if at := r.URL.Query().Get("artifactType"); at != "" {
		kept := refs[:0]
		for _, d := range refs {
			if d.ArtifactType == at {
				kept = append(kept, d)
			}
		}
		refs = kept
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, r, ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specsVersioned, MediaType: ocispec.MediaTypeImageIndex, Manifests: refs,
	})
}

// referrers lists the descriptors recorded for manifests whose subject is
// subject; an unknown subject has none (the spec forbids a 404 here).
func (g *Registry) referrers(ctx context.Context, name string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	refs := []ocispec.Descriptor{}
	algs, err := g.driver.List(ctx, referrersPath(name, subject))
	if err != nil {
		if isNotFound(err) {
			return refs, nil
		}
		return nil, fmt.Errorf("list referrers of %s: %w", subject, err)
	}
	for _, alg := range algs {
		entries, err := g.driver.List(ctx, alg)
		if err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("list referrers of %s: %w", subject, err)
		}
		for _, e := range entries {
			raw, err := g.driver.GetContent(ctx, e+"/link")
			if isNotFound(err) {
				continue // deleted meanwhile, or a crash before the link
			}
			if err != nil {
				return nil, fmt.Errorf("read referrer of %s: %w", subject, err)
			}
			var desc ocispec.Descriptor
			if err := json.Unmarshal(raw, &desc); err != nil {
				return nil, fmt.Errorf("referrer of %s: stored link: %w", subject, err)
			}
			refs = append(refs, desc)
		}
	}
	return refs, nil
}
