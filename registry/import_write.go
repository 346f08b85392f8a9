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

// write carries out a verified plan, image by image, in the server's
// order: a blob's data before the link that makes it visible, each
// manifest right after the blobs it references (children before their
// index), and the image's tag right after its manifest. Nothing written
// thus waits long without a manifest or a tag referencing it, which
// garbage collection's grace period relies on; and a failure half-way (a
// full disk) leaves images that are complete or absent, which a retry
// finishes.
func (p *importPlan) write(ctx context.Context) (*ImportReport, error) {
	rep := &ImportReport{}
	for _, dg := range p.blobOrder {
		if !p.blobs[dg].write {
			rep.BlobsPresent++
		}
	}
	for i, im := range p.images {
		rp := p.repos[im.repo]
		stored := false
		for _, m := range rp.manifests[p.spans[i][0]:p.spans[i][1]] {
			ok, err := p.writeManifest(ctx, im.repo, m, rep)
			if err != nil {
				return rep, err
			}
			stored = stored || ok
		}
		out, err := p.tag(ctx, im)
		if err != nil {
			return rep, err
		}
		out.Present = out.Present && !stored
		rep.Images = append(rep.Images, out)
	}
	return rep, nil
}

// writeManifest writes and links the blobs of m that repo lacks, then
// stores m there unless it is there already; it says whether it stored m.
func (p *importPlan) writeManifest(ctx context.Context, repo string, m *manifestPlan, rep *ImportReport) (bool, error) {
	for _, bd := range blobsOf(m.doc) {
		if manifest.IsNonDistributable(bd.MediaType) {
			continue
		}
		if err := p.writeBlob(ctx, repo, bd.Digest, rep); err != nil {
			return false, err
		}
	}
	ok, err := p.g.exists(ctx, revisionLinkPath(repo, m.desc.Digest))
	if err != nil || ok {
		return false, err
	}
	if err := p.g.checkReferences(ctx, repo, m.doc); err != nil {
		return false, fmt.Errorf("store manifest %s in %s: %w", m.desc.Digest, repo, err)
	}
	if err := p.g.storeManifest(ctx, repo, m.desc, m.body, m.doc, nil); err != nil {
		return false, err
	}
	return true, nil
}

// writeBlob writes blob dg from the bundle unless the registry has it,
// and links it into repo unless it is linked already.
func (p *importPlan) writeBlob(ctx context.Context, repo string, dg digest.Digest, rep *ImportReport) error {
	bp := p.blobs[dg]
	if bp.write && !bp.done {
		if err := p.g.putBlob(ctx, repo, bp.desc, io.NewSectionReader(bp.data, 0, bp.data.Size())); err != nil {
			return err
		}
		bp.done = true
		rep.BlobsWritten++
		rep.BytesWritten += bp.desc.Size
		return nil
	}
	ok, err := p.g.exists(ctx, layerLinkPath(repo, dg))
	if err != nil || ok {
		return err
	}
	return p.g.linkBlob(ctx, repo, dg)
}

// tag points the entry's tag at its manifest unless it already does, and
// says what the registry held before.
func (p *importPlan) tag(ctx context.Context, im bundleImage) (ImportedImage, error) {
	out := ImportedImage{Repository: im.repo, Tag: im.tag, Digest: im.desc.Digest, MediaType: im.desc.MediaType, Present: true}
	for _, m := range p.repos[im.repo].manifests {
		if m.desc.Digest == im.desc.Digest && m.doc.Subject != nil {
			out.Subject = m.doc.Subject.Digest
		}
	}
	if im.tag == "" {
		return out, nil
	}
	cur, err := p.g.resolve(ctx, im.repo, im.tag)
	var ae *apiError
	switch {
	case err == nil && cur == im.desc.Digest:
		return out, nil
	case err == nil:
		out.Moved = cur
	case !errors.As(err, &ae):
		return out, err
	}
	out.Present = false
	if err := p.g.driver.PutContent(ctx, tagLinkPath(im.repo, im.tag), []byte(im.desc.Digest)); err != nil {
		return out, fmt.Errorf("tag %s:%s: %w", im.repo, im.tag, err)
	}
	return out, nil
}

func (g *Registry) exists(ctx context.Context, p string) (bool, error) {
	if _, err := g.driver.Stat(ctx, p); err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("stat %s: %w", p, err)
	}
	return true, nil
}

// putBlob writes blob d from r into the blob store and links it into
// repository name, as a monolithic push does: through an upload session,
// hashed as it streams, moved into place only when it matches d.
func (g *Registry) putBlob(ctx context.Context, name string, d ocispec.Descriptor, r io.Reader) (err error) {
	u, err := g.createUpload(ctx, name, d.Digest.Algorithm())
	if err != nil {
		return err
	}
	defer func() {
		if derr := g.deleteUpload(context.WithoutCancel(ctx), name, u.id); err == nil {
			err = derr
		}
	}()
	fw, err := g.driver.Writer(ctx, uploadDataPath(name, u.id), true)
	if err != nil {
		return fmt.Errorf("write blob %s: %w", d.Digest, err)
	}
	n, err := streamBody(fw, u.hash, ctxReader{ctx, r})
	if err == nil {
		err = fw.Commit(ctx)
	}
	if cerr := fw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write blob %s: %w", d.Digest, err)
	}
	if got := digest.NewDigest(d.Digest.Algorithm(), u.hash); n != d.Size || got != d.Digest {
		return badBundle("blob %s changed while being imported: %d bytes hashing to %s", d.Digest, n, got)
	}
	if err := g.driver.Move(ctx, uploadDataPath(name, u.id), blobDataPath(d.Digest)); err != nil {
		return fmt.Errorf("store blob %s: %w", d.Digest, err)
	}
	return g.linkBlob(ctx, name, d.Digest)
}
