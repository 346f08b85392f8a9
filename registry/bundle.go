package registry

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/imgtool/imgtool/internal/bundlename"
	"github.com/imgtool/imgtool/manifest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxBundleEntries bounds the members of a bundle read from untrusted media.
const maxBundleEntries = 1 << 20

// annotationImageName is where containerd, docker 25 and imgtool save put
// an image's full reference in an archive's index.json.
const annotationImageName = "io.containerd.image.name"

// ErrBadBundle marks a bundle that cannot be imported as it is: not an OCI
// archive, hostile, truncated, or with content that does not match its
// digests.
var ErrBadBundle = errors.New("bad bundle")

func badBundle(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadBundle, fmt.Sprintf(format, args...))
}

// bundle is an OCI image-layout archive (what `imgtool save --format oci`
// and skopeo's oci-archive: write) opened for random access: each member
// is a section of the file, so nothing is extracted and no member name
// ever becomes a path. Written by hand because neither
// go-containerregistry nor image-spec reads archives this way, and the
// registry package may not use store/transport's reader.
type bundle struct {
	r       io.ReaderAt
	members map[string]section
}

type section struct{ off, size int64 }

// openBundle indexes the tar in r (size bytes). It refuses what an OCI
// layout never holds and an attacker might: names that are not clean
// relative paths (traversal, absolute), duplicate names, links and device
// files. A truncated tar fails here, since every member's data must lie
// inside the file.
func openBundle(r io.ReaderAt, size int64) (*bundle, error) {
	b := &bundle{r: r, members: map[string]section{}}
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	var end int64 // where the last member's data (padded) ends
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			// archive/tar also stops cleanly at a block boundary with no
			// end-of-archive marker: a copy cut short there.
			if pos, _ := sr.Seek(0, io.SeekCurrent); pos < end+2*512 {
				return nil, badBundle("the tar ends without its end-of-archive marker after %d bytes (truncated?)", size)
			}
			break
		}
		if err != nil {
			return nil, badBundle("reading the tar (truncated or not a tar?): %v", err)
		}
		if n >= maxBundleEntries {
			return nil, badBundle("more than %d members", maxBundleEntries)
		}
		nm, err := memberName(h.Name)
		if err != nil {
			return nil, err
		}
		off, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("read bundle: %w", err)
		}
		end = off + (h.Size+511)&^511
		switch h.Typeflag {
		case tar.TypeDir, tar.TypeXGlobalHeader:
			continue
		case tar.TypeReg:
		default:
			return nil, badBundle("member %q is not a regular file (type %q): an OCI archive holds only files and directories", h.Name, h.Typeflag)
		}
		if nm == "" {
			return nil, badBundle("member %q has no name", h.Name)
		}
		if _, dup := b.members[nm]; dup {
			return nil, badBundle("member %q appears twice", nm)
		}
		// tar.Reader seeks over data it skips, so after Next the offset
		// is where this member's data starts.
		if h.Size < 0 || off+h.Size > size {
			return nil, badBundle("member %q runs past the end of the file (truncated?)", nm)
		}
		b.members[nm] = section{off: off, size: h.Size}
	}
	return b, nil
}

// memberName cleans a tar member name ("./index.json" is "index.json")
// and refuses any that is not a plain relative path inside the archive.
func memberName(raw string) (string, error) {
	n := strings.TrimSuffix(strings.TrimPrefix(raw, "./"), "/")
	if n == "" || n == "." {
		return "", nil
	}
	if !fs.ValidPath(n) || strings.Contains(n, `\`) {
		return "", badBundle("member name %q is not a clean relative path (path traversal?)", raw)
	}
	return n, nil
}

func (b *bundle) open(nm string) (*io.SectionReader, bool) {
	s, ok := b.members[nm]
	if !ok {
		return nil, false
	}
	return io.NewSectionReader(b.r, s.off, s.size), true
}

// blob returns the member holding d, checking its size against d's.
func (b *bundle) blob(d ocispec.Descriptor) (*io.SectionReader, bool, error) {
	sr, ok := b.open("blobs/" + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded())
	if !ok {
		return nil, false, nil
	}
	if sr.Size() != d.Size {
		return nil, true, badBundle("blob %s is %d bytes in the bundle but its descriptor says %d", d.Digest, sr.Size(), d.Size)
	}
	return sr, true, nil
}

// readManifest reads manifest d from the bundle, bounded and verified.
func (b *bundle) readManifest(d ocispec.Descriptor) ([]byte, error) {
	sr, ok, err := b.blob(d)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, badBundle("manifest %s is not in the bundle", d.Digest)
	}
	raw, err := io.ReadAll(sr)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s from bundle: %w", d.Digest, err)
	}
	if got := d.Digest.Algorithm().FromBytes(raw); got != d.Digest {
		return nil, badBundle("manifest %s has content hashing to %s", d.Digest, got)
	}
	return raw, nil
}

// bundleImage is one entry of the bundle's index.json: where it goes and
// what it is.
type bundleImage struct {
	name string // the full reference index.json gives
	repo string
	tag  string // "" for an entry named by digest (a referrer)
	desc ocispec.Descriptor
}

// images reads index.json and names each entry's repository and tag.
func (b *bundle) images(opts ImportOptions) ([]bundleImage, error) {
	if _, ok := b.members[ocispec.ImageLayoutFile]; !ok {
		return nil, badBundle("no %s member: not an OCI archive (write one with `imgtool save --format oci` or skopeo's oci-archive:)", ocispec.ImageLayoutFile)
	}
	sr, ok := b.open(ocispec.ImageIndexFile)
	if !ok {
		return nil, badBundle("no %s member: not an OCI archive, or truncated", ocispec.ImageIndexFile)
	}
	if sr.Size() > manifest.MaxManifestSize {
		return nil, badBundle("%s is %d bytes, over the %d byte limit", ocispec.ImageIndexFile, sr.Size(), manifest.MaxManifestSize)
	}
	raw, err := io.ReadAll(sr)
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", ocispec.ImageIndexFile, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, badBundle("%s: %v", ocispec.ImageIndexFile, err)
	}
	if len(idx.Manifests) == 0 {
		return nil, badBundle("%s lists no images", ocispec.ImageIndexFile)
	}
	out := make([]bundleImage, 0, len(idx.Manifests))
	for _, d := range idx.Manifests {
		if err := manifest.ValidateDescriptor(d); err != nil {
			return nil, badBundle("%s: %v", ocispec.ImageIndexFile, err)
		}
		if !manifest.IsManifestOrIndex(d.MediaType) {
			return nil, badBundle("%s: entry %s has media type %q, not a manifest or index", ocispec.ImageIndexFile, d.Digest, d.MediaType)
		}
		im, err := entryName(d, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, im)
	}
	return out, nil
}

// entryName finds the repository and tag of an index.json entry: the full
// reference containerd and docker put in io.containerd.image.name, else
// org.opencontainers.image.ref.name when it holds a full reference (as
// crane and skopeo write it). A bare tag there (what buildx and skopeo
// write with oci-archive:FILE:TAG), or no name at all, goes to
// opts.Repository when it is set.
func entryName(d ocispec.Descriptor, opts ImportOptions) (bundleImage, error) {
	full := d.Annotations[annotationImageName]
	rn := d.Annotations[ocispec.AnnotationRefName]
	if full == "" && strings.Contains(rn, "/") {
		full = rn
	}
	if full == "" {
		if opts.Repository == "" {
			return bundleImage{}, badBundle("image %s has no full reference (annotation %s, or %s with a repository): name its repository with --repository", d.Digest, annotationImageName, ocispec.AnnotationRefName)
		}
		full = opts.Repository + "@" + d.Digest.String()
		if rn != "" {
			full = opts.Repository + ":" + rn
		}
	}
	ref, err := name.ParseReference(full)
	if err != nil {
		return bundleImage{}, badBundle("image %s: reference %q: %v", d.Digest, full, err)
	}
	im := bundleImage{name: full, repo: BundleRepository(ref, opts.Scoped), desc: d}
	if opts.Repository != "" && d.Annotations[annotationImageName] == "" && !strings.Contains(rn, "/") {
		im.repo = opts.Repository
	}
	if !validName(im.repo) {
		return bundleImage{}, badBundle("image %s: invalid repository name %q", d.Digest, im.repo)
	}
	switch r := ref.(type) {
	case name.Tag:
		im.tag = r.TagStr()
		if !validTag(im.tag) {
			return bundleImage{}, badBundle("image %s: invalid tag %q", d.Digest, im.tag)
		}
	case name.Digest:
		if digest.Digest(r.DigestStr()) != d.Digest {
			return bundleImage{}, badBundle("index.json names %s for content %s", full, d.Digest)
		}
	}
	return im, nil
}

// BundleRepository is the repository an image saved as ref goes to in a
// registry it is imported into (see bundlename.Repository).
func BundleRepository(ref name.Reference, scoped bool) string {
	return bundlename.Repository(ref, scoped)
}
