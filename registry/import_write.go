package registry

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// write carries out a verified plan. The order is the server's: blob data
// before the links that make it visible, a manifest only once everything
// it references is linked, tags last. A failure half-way (a full disk)
// leaves images that are either complete or absent, and a retry finishes
// the job.
func (p *importPlan) write(ctx context.Context) (*ImportReport, error) {
	rep := &ImportReport{}
	for _, dg := range p.blobOrder {
		bp := p.blobs[dg]
		if !bp.write {
			rep.BlobsPresent++
			continue
		}
		if err := p.g.putBlob(ctx, bp.repo, bp.desc, io.NewSectionReader(bp.data, 0, bp.data.Size())); err != nil {
			return rep, err
		}
		rep.BlobsWritten++
		rep.BytesWritten += bp.desc.Size
	}
	written := map[string]map[digest.Digest]bool{}
	for _, repo := range p.order {
		w, err := p.writeRepo(ctx, repo, p.repos[repo])
		if err != nil {
			return rep, err
		}
		written[repo] = w
	}
	for _, im := range p.images {
		out, err := p.tag(ctx, im)
		if err != nil {
			return rep, err
		}
		out.Present = out.Present && !written[im.repo][im.desc.Digest]
		rep.Images = append(rep.Images, out)
	}
	return rep, nil
}

// writeRepo links the repository's blobs and stores its manifests that it
// lacks; it returns the manifests it stored.
func (p *importPlan) writeRepo(ctx context.Context, repo string, rp *repoPlan) (map[digest.Digest]bool, error) {
	for _, dg := range rp.blobs {
		ok, err := p.g.exists(ctx, layerLinkPath(repo, dg))
		if err != nil {
			return nil, err
		}
		if !ok {
			if err := p.g.linkBlob(ctx, repo, dg); err != nil {
				return nil, err
			}
		}
	}
	stored := map[digest.Digest]bool{}
	for _, m := range rp.manifests {
		ok, err := p.g.exists(ctx, revisionLinkPath(repo, m.desc.Digest))
		if err != nil {
			return nil, err
		}
		if ok {
			continue
		}
		if err := p.g.checkReferences(ctx, repo, m.doc); err != nil {
			return nil, fmt.Errorf("store manifest %s in %s: %w", m.desc.Digest, repo, err)
		}
		if err := p.g.storeManifest(ctx, repo, m.desc, m.body, m.doc, nil); err != nil {
			return nil, err
		}
		stored[m.desc.Digest] = true
	}
	return stored, nil
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
	n, err := io.Copy(io.MultiWriter(fw, u.hash), ctxReader{ctx, r})
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
