package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/imgtool/imgtool/manifest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// resolve turns a manifest reference (tag or digest) into a digest.
func (g *Registry) resolve(ctx context.Context, name, ref string) (digest.Digest, error) {
	if strings.Contains(ref, ":") {
		d, err := parseDigest(ref)
		if err != nil {
			return "", newError(errDigestInvalid, "manifest reference %q: %v", ref, err)
		}
		return d, nil
	}
	if !validTag(ref) {
		return "", newError(errManifestInvalid, "invalid tag %q", ref)
	}
	raw, err := g.driver.GetContent(ctx, tagLinkPath(name, ref))
	if err != nil {
		if isNotFound(err) {
			return "", newError(errManifestUnknown, "tag %s not found in %s", ref, name)
		}
		return "", fmt.Errorf("read tag %s of %s: %w", ref, name, err)
	}
	d, err := parseDigest(string(raw))
	if err != nil {
		return "", fmt.Errorf("tag %s of %s: stored link: %w", ref, name, err)
	}
	return d, nil
}

// revision returns the descriptor of manifest d in repository name.
func (g *Registry) revision(ctx context.Context, name string, d digest.Digest) (ocispec.Descriptor, error) {
	raw, err := g.driver.GetContent(ctx, revisionLinkPath(name, d))
	if err != nil {
		if isNotFound(err) {
			return ocispec.Descriptor{}, newError(errManifestUnknown, "manifest %s not found in %s", d, name)
		}
		return ocispec.Descriptor{}, fmt.Errorf("read manifest %s of %s: %w", d, name, err)
	}
	var desc ocispec.Descriptor
	if err := json.Unmarshal(raw, &desc); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("manifest %s of %s: stored link: %w", d, name, err)
	}
	return desc, nil
}

func (g *Registry) getManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	ctx := r.Context()
	d, err := g.resolve(ctx, rt.name, rt.ref)
	if err != nil {
		return err
	}
	desc, err := g.revision(ctx, rt.name, d)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", desc.MediaType)
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Etag", `"`+d.String()+`"`)
	h.Set("Content-Length", strconv.FormatInt(desc.Size, 10))
	if r.Method == http.MethodHead {
		// A pusher that finds the manifest skips pushing it: that counts
		// as recent use for garbage collection's grace period.
		if link, err := json.Marshal(desc); err == nil {
			g.refresh(ctx, revisionLinkPath(rt.name, d), link)
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
	body, err := g.driver.GetContent(ctx, blobDataPath(d))
	if err != nil {
		return fmt.Errorf("read manifest %s: %w", d, err)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

func (g *Registry) putManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	ctx := r.Context()
	body, err := io.ReadAll(io.LimitReader(r.Body, manifest.MaxManifestSize+1))
	if err != nil {
		return newError(errManifestInvalid, "reading manifest: %v", err)
	}
	if len(body) > manifest.MaxManifestSize {
		return newError(errTooLarge, "manifest is over the %d byte limit", manifest.MaxManifestSize)
	}
	d, tags, err := putTarget(rt.ref, r.URL.Query()["tag"], body)
	if err != nil {
		return err
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	m, err := parseManifest(body, mt)
	if err != nil {
		return err
	}
	// Let a garbage collection deciding about what this manifest
	// references finish first (gc.go), then check and store it.
	if _, err := g.settle(ctx, append([]digest.Digest{d}, m.references()...)); err != nil {
		return err
	}
	written := time.Now()
	if err := g.checkReferences(ctx, rt.name, m); err != nil {
		return err
	}
	prior := g.priorState(ctx, rt.name, d, tags)
	desc := ocispec.Descriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(body))}
	if err := g.storeManifest(ctx, rt.name, desc, body, m, tags); err != nil {
		return g.takeBack(ctx, rt.name, d, m, tags, prior, err)
	}
	if err := g.guardManifest(ctx, rt.name, desc, body, m, written); err != nil {
		return g.takeBack(ctx, rt.name, d, m, tags, prior, err)
	}
	h := w.Header()
	h.Set("Location", "/v2/"+rt.name+"/manifests/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	if m.Subject != nil {
		h.Set("OCI-Subject", m.Subject.Digest.String())
	}
	if len(tags) > 0 {
		h.Set("OCI-Tag", strings.Join(tags, ","))
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// manifestPrior is what a PUT found before it wrote: whether the revision
// existed, and which of its tags already named the manifest.
type manifestPrior struct {
	existed bool
	tagged  map[string]bool
}

// priorState reads manifestPrior for a PUT of d with tags into name. A
// read that fails counts as "not there", which only makes a failed PUT
// take back more.
func (g *Registry) priorState(ctx context.Context, name string, d digest.Digest, tags []string) manifestPrior {
	_, err := g.revision(ctx, name, d)
	p := manifestPrior{existed: err == nil, tagged: map[string]bool{}}
	for _, t := range tags {
		if raw, err := g.driver.GetContent(ctx, tagLinkPath(name, t)); err == nil && string(raw) == d.String() {
			p.tagged[t] = true
		}
	}
	return p
}

// takeBack answers a PUT that failed (err) after it began storing
// manifest d: what it stored is taken back, even if the client has gone,
// since nothing checked it against a collection that may have deleted
// what it references (gc.go). A manifest whose references went is taken
// back whole. After any other failure (storage, client gone) what was
// there before the PUT stays: a failed re-push must not delete an image
// that was pushed earlier, and a revision that existed before the PUT was
// seen by any collection that could have deleted what it names.
func (g *Registry) takeBack(ctx context.Context, name string, d digest.Digest, m *manifestDoc, tags []string, prior manifestPrior, err error) error {
	ctx = context.WithoutCancel(ctx)
	var ae *apiError
	if (errors.As(err, &ae) && ae.code == errManifestBlobUnknown) || !prior.existed {
		return errors.Join(err, g.unstore(ctx, name, d, m, tags))
	}
	var added []string
	for _, t := range tags {
		if !prior.tagged[t] {
			added = append(added, t)
		}
	}
	return errors.Join(err, g.untagSome(ctx, name, d, added))
}

// putTarget checks the reference a manifest is pushed to, and any ?tag=
// parameters, and returns the content's digest (in the reference's
// algorithm when it is a digest) and the tags to set.
func putTarget(ref string, tagParams []string, body []byte) (digest.Digest, []string, error) {
	alg := digest.Canonical
	var tags []string
	var want digest.Digest
	if strings.Contains(ref, ":") {
		var err error
		if want, err = parseDigest(ref); err != nil {
			return "", nil, newError(errDigestInvalid, "manifest reference %q: %v", ref, err)
		}
		alg = want.Algorithm()
	} else if validTag(ref) {
		tags = append(tags, ref)
	} else {
		return "", nil, newError(errManifestInvalid, "invalid tag %q", ref)
	}
	for _, t := range tagParams {
		if !validTag(t) {
			return "", nil, newError(errManifestInvalid, "invalid tag %q", t)
		}
		if t != ref {
			tags = append(tags, t)
		}
	}
	d := alg.FromBytes(body)
	if want != "" && d != want {
		return "", nil, newError(errDigestInvalid, "manifest has digest %s, not %s", d, want)
	}
	return d, tags, nil
}

// storeManifest writes the content, then the revision that makes it
// visible, then its referrer entry and tags, each write atomic: a crash
// leaves at worst a manifest without its newest tags, which a retry adds.
func (g *Registry) storeManifest(ctx context.Context, name string, desc ocispec.Descriptor, body []byte, m *manifestDoc, tags []string) error {
	if _, err := g.globalBlobSize(ctx, desc.Digest); err != nil {
		if err := g.driver.PutContent(ctx, blobDataPath(desc.Digest), body); err != nil {
			return fmt.Errorf("store manifest %s: %w", desc.Digest, err)
		}
	}
	link, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	if err := g.driver.PutContent(ctx, revisionLinkPath(name, desc.Digest), link); err != nil {
		return fmt.Errorf("store manifest %s in %s: %w", desc.Digest, name, err)
	}
	if m.Subject != nil {
		ref := m.referrer(desc)
		raw, err := json.Marshal(ref)
		if err != nil {
			return err
		}
		if err := g.driver.PutContent(ctx, referrerLinkPath(name, m.Subject.Digest, desc.Digest), raw); err != nil {
			return fmt.Errorf("record referrer %s of %s: %w", desc.Digest, m.Subject.Digest, err)
		}
	}
	for _, t := range tags {
		if err := g.driver.PutContent(ctx, tagLinkPath(name, t), []byte(desc.Digest)); err != nil {
			return fmt.Errorf("tag %s:%s: %w", name, t, err)
		}
	}
	return nil
}

func (g *Registry) deleteManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	ctx := r.Context()
	if !strings.Contains(rt.ref, ":") {
		if _, err := g.resolve(ctx, rt.name, rt.ref); err != nil {
			return err
		}
		if err := g.driver.Delete(ctx, path.Dir(tagLinkPath(rt.name, rt.ref))); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete tag %s of %s: %w", rt.ref, rt.name, err)
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	d, err := g.resolve(ctx, rt.name, rt.ref)
	if err != nil {
		return err
	}
	if _, err := g.revision(ctx, rt.name, d); err != nil {
		return err
	}
	if err := g.untag(ctx, rt.name, d); err != nil {
		return err
	}
	if body, err := g.driver.GetContent(ctx, blobDataPath(d)); err == nil {
		if m, err := parseManifest(body, ""); err == nil && m.Subject != nil {
			if err := g.driver.Delete(ctx, path.Dir(referrerLinkPath(rt.name, m.Subject.Digest, d))); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete referrer %s: %w", d, err)
			}
		}
	}
	if err := g.driver.Delete(ctx, path.Dir(revisionLinkPath(rt.name, d))); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete manifest %s of %s: %w", d, rt.name, err)
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// untag removes the tags of repository name that point at d.
func (g *Registry) untag(ctx context.Context, name string, d digest.Digest) error {
	tags, err := g.tags(ctx, name)
	if err != nil {
		return err
	}
	for _, t := range tags {
		raw, err := g.driver.GetContent(ctx, tagLinkPath(name, t))
		if err != nil || string(raw) != d.String() {
			continue
		}
		if err := g.driver.Delete(ctx, path.Dir(tagLinkPath(name, t))); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete tag %s of %s: %w", t, name, err)
		}
	}
	return nil
}
