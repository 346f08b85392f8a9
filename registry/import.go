package registry

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/imgtool/imgtool/manifest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImportOptions tune Import.
type ImportOptions struct {
	// Scoped keeps each image's registry host as the first component of
	// its repository (see BundleRepository).
	Scoped bool
	// Repository receives the images index.json names by a bare tag or
	// not at all.
	Repository string
}

// ImportReport says what Import did.
type ImportReport struct {
	Images []ImportedImage
	// BlobsWritten and BytesWritten count the blobs (layers, configs)
	// copied from the bundle; BlobsPresent those the registry already held.
	BlobsWritten int
	BytesWritten int64
	BlobsPresent int
}

// ImportedImage is one entry of the bundle's index.json.
type ImportedImage struct {
	Repository string
	// Tag is "" for an entry named by digest, such as a referrer.
	Tag       string
	Digest    digest.Digest
	MediaType string
	// Subject is the manifest a referrer refers to.
	Subject digest.Digest
	// Present means the registry held the image exactly so already, and
	// nothing was written for it.
	Present bool
	// Moved is what the tag named before, when Import moved it.
	Moved digest.Digest
}

// maxImportDepth bounds how deeply indexes may nest in a bundle.
const maxImportDepth = 8

// Import writes the images of an OCI image-layout archive (r, size bytes
// long) into the registry's storage, without a server: each image under
// the repository (BundleRepository) and tag its index.json entry names,
// referrers by digest with their subject recorded, every manifest byte for
// byte, so every digest is the one the bundle was saved with.
//
// It works in three passes so that a bad bundle changes nothing: plan
// (read and validate index.json and every manifest, and find what the
// registry lacks), verify (hash every blob to be written), then write,
// image by image, through the registry's own write paths: blobs through an
// upload session verified again as they stream, each manifest right after
// its blobs (children first), the tag right after the image. What the
// registry already holds is neither read nor rewritten, so importing a
// bundle twice writes nothing the second time.
func (g *Registry) Import(ctx context.Context, r io.ReaderAt, size int64, opts ImportOptions) (*ImportReport, error) {
	b, err := openBundle(r, size)
	if err != nil {
		return nil, fmt.Errorf("import bundle: %w (nothing was written)", err)
	}
	images, err := b.images(opts)
	if err != nil {
		return nil, fmt.Errorf("import bundle: %w (nothing was written)", err)
	}
	p := &importPlan{g: g, b: b, images: images, repos: map[string]*repoPlan{}, blobs: map[digest.Digest]*blobPlan{}, parsed: map[digest.Digest]*manifestPlan{}}
	if err := p.plan(ctx); err != nil {
		return nil, fmt.Errorf("import bundle: %w (nothing was written)", err)
	}
	if err := p.verify(ctx); err != nil {
		return nil, fmt.Errorf("import bundle: %w (nothing was written)", err)
	}
	rep, err := p.write(ctx)
	if err != nil {
		return rep, fmt.Errorf("import bundle: while writing (images already written are complete; importing again finishes the rest): %w", err)
	}
	return rep, nil
}

type importPlan struct {
	g         *Registry
	b         *bundle
	images    []bundleImage
	repos     map[string]*repoPlan
	blobs     map[digest.Digest]*blobPlan
	blobOrder []digest.Digest
	// spans[i] is the part of its repository's manifests that image i
	// adds (children first, itself last).
	spans [][2]int
	// parsed holds each manifest read, held counts their bytes.
	parsed map[digest.Digest]*manifestPlan
	held   int64
}

// repoPlan is what one repository receives.
type repoPlan struct {
	manifests []*manifestPlan // children before the indexes that list them
	seen      map[digest.Digest]bool
}

type manifestPlan struct {
	desc ocispec.Descriptor
	body []byte
	doc  *manifestDoc
}

// blobPlan is one blob of the bundle: whether it must be written.
type blobPlan struct {
	desc  ocispec.Descriptor
	write bool // the registry lacks it
	done  bool // written
	data  *io.SectionReader
}

func (p *importPlan) repo(name string) *repoPlan {
	rp := p.repos[name]
	if rp == nil {
		rp = &repoPlan{seen: map[digest.Digest]bool{}}
		p.repos[name] = rp
	}
	return rp
}

// plan reads every manifest of every image, validated as a push would be,
// and decides for each blob whether the registry has it.
func (p *importPlan) plan(ctx context.Context) error {
	tags := map[string]bundleImage{}
	for _, im := range p.images {
		if im.tag == "" {
			continue
		}
		k := im.repo + ":" + im.tag
		if prev, ok := tags[k]; ok && prev.desc.Digest != im.desc.Digest {
			return badBundle("%s and %s would both be %s: import with --scoped to keep their registries apart", prev.name, im.name, k)
		}
		tags[k] = im
	}
	for _, im := range p.images {
		rp := p.repo(im.repo)
		start := len(rp.manifests)
		if err := p.walk(ctx, im.repo, im.desc, 0); err != nil {
			return fmt.Errorf("%s@%s: %w", im.repo, im.desc.Digest, err)
		}
		p.spans = append(p.spans, [2]int{start, len(rp.manifests)})
	}
	return nil
}

// blobsOf lists the blobs a manifest references: config and layers, or
// the children of an index that are not manifests.
func blobsOf(doc *manifestDoc) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	if doc.Config != nil {
		out = append(append(out, *doc.Config), doc.Layers...)
	}
	for _, c := range doc.Manifests {
		if !manifest.IsManifestOrIndex(c.MediaType) {
			out = append(out, c)
		}
	}
	return out
}

func (p *importPlan) walk(ctx context.Context, repo string, d ocispec.Descriptor, depth int) error {
	rp := p.repo(repo)
	if rp.seen[d.Digest] {
		return nil
	}
	if depth > maxImportDepth {
		return badBundle("indexes nest more than %d deep", maxImportDepth)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m, err := p.manifest(d)
	if err != nil {
		return err
	}
	for _, bd := range blobsOf(m.doc) {
		if err := p.addBlob(ctx, bd); err != nil {
			return err
		}
	}
	for _, c := range m.doc.Manifests {
		if !manifest.IsManifestOrIndex(c.MediaType) {
			continue
		}
		if err := p.walk(ctx, repo, c, depth+1); err != nil {
			return err
		}
	}
	rp.seen[d.Digest] = true
	rp.manifests = append(rp.manifests, m)
	return nil
}

// maxPlanManifestBytes bounds the manifests a plan holds in memory.
const maxPlanManifestBytes = 256 << 20

// manifest reads and parses manifest d once, whatever the repositories
// that list it.
func (p *importPlan) manifest(d ocispec.Descriptor) (*manifestPlan, error) {
	if m, ok := p.parsed[d.Digest]; ok {
		if _, err := parseManifest(m.body, d.MediaType); err != nil {
			return nil, badBundle("manifest %s: %v", d.Digest, err)
		}
		return m, nil
	}
	if p.held += d.Size; p.held > maxPlanManifestBytes {
		return nil, badBundle("its manifests add up to more than %d bytes", maxPlanManifestBytes)
	}
	body, err := p.b.readManifest(d)
	if err != nil {
		return nil, err
	}
	doc, err := parseManifest(body, d.MediaType)
	if err != nil {
		return nil, badBundle("manifest %s: %v", d.Digest, err)
	}
	m := &manifestPlan{desc: ocispec.Descriptor{MediaType: doc.MediaType, Digest: d.Digest, Size: int64(len(body))}, body: body, doc: doc}
	p.parsed[d.Digest] = m
	return m, nil
}

// addBlob records blob d, referenced by a manifest. A blob the registry
// already holds is linked without reading the bundle; one it lacks must
// be in the bundle. Non-distributable layers are never pushed, so never
// imported.
func (p *importPlan) addBlob(ctx context.Context, d ocispec.Descriptor) error {
	if err := manifest.ValidateDescriptor(d); err != nil {
		return badBundle("%v", err)
	}
	if manifest.IsNonDistributable(d.MediaType) {
		return nil
	}
	if _, err := parseDigest(d.Digest.String()); err != nil {
		return badBundle("blob %s: %v", d.Digest, err)
	}
	if bp, ok := p.blobs[d.Digest]; ok {
		if bp.desc.Size != d.Size {
			return badBundle("blob %s is described with sizes %d and %d", d.Digest, bp.desc.Size, d.Size)
		}
		return nil
	}
	bp := &blobPlan{desc: d}
	have, err := p.g.globalBlobSize(ctx, d.Digest)
	var ae *apiError
	switch {
	case err == nil && have != d.Size:
		return badBundle("blob %s is described as %d bytes but the registry holds %d bytes under that digest", d.Digest, d.Size, have)
	case err == nil:
	case errors.As(err, &ae):
		data, ok, err := p.b.blob(d)
		if err != nil {
			return err
		}
		if !ok {
			return badBundle("blob %s is neither in the bundle nor in the registry", d.Digest)
		}
		bp.write, bp.data = true, data
	default:
		return err
	}
	p.blobs[d.Digest] = bp
	p.blobOrder = append(p.blobOrder, d.Digest)
	return nil
}

// verify hashes every blob to be written, before anything is.
func (p *importPlan) verify(ctx context.Context) error {
	for _, dg := range p.blobOrder {
		bp := p.blobs[dg]
		if !bp.write {
			continue
		}
		v := dg.Verifier()
		if _, err := io.Copy(v, ctxReader{ctx, io.NewSectionReader(bp.data, 0, bp.data.Size())}); err != nil {
			return fmt.Errorf("verify blob %s: %w", dg, err)
		}
		if !v.Verified() {
			return badBundle("blob %s: content does not match its digest (corrupted or tampered bundle)", dg)
		}
	}
	return nil
}

// ctxReader stops a long read when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
