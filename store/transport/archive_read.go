package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// annotationImageName is where containerd and docker (25 and later) put
// the full reference of an image in an archive's index.json.
const annotationImageName = "io.containerd.image.name"

// dockerManifestEntry is one entry of a docker save manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// archiveSource reads an OCI archive, or a docker archive in either the
// OCI-based layout docker 25 writes or the legacy one.
type archiveSource struct {
	loc    Location
	f      *os.File
	tar    *tarIndex
	images []store.Image
	// legacy holds what a legacy docker archive lacks and we synthesize:
	// manifests by digest, and the member path of each blob.
	legacy map[digest.Digest][]byte
	paths  map[digest.Digest]string
}

func openArchiveSource(loc Location) (Source, error) {
	f, err := os.Open(loc.Path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	t, err := indexTar(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	a := &archiveSource{loc: loc, f: f, tar: t, legacy: map[digest.Digest][]byte{}, paths: map[digest.Digest]string{}}
	switch {
	case t.has(ocispec.ImageIndexFile):
		err = a.readIndex()
	case t.has("manifest.json"):
		err = a.readLegacy()
	default:
		err = fmt.Errorf("open %s: neither an OCI archive (no index.json) nor a docker archive (no manifest.json)", loc)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

func (a *archiveSource) readIndex() error {
	raw, err := a.tar.readSmall(ocispec.ImageIndexFile, manifest.MaxManifestSize)
	if err != nil {
		return err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return fmt.Errorf("open %s: index.json: %w", a.loc, err)
	}
	for _, d := range idx.Manifests {
		if err := manifest.ValidateDescriptor(d); err != nil {
			return fmt.Errorf("open %s: index.json: %w", a.loc, err)
		}
		n := d.Annotations[annotationImageName]
		if n == "" {
			n = d.Annotations[ocispec.AnnotationRefName]
		}
		a.images = append(a.images, store.Image{Name: n, Descriptor: d})
	}
	return nil
}

// readLegacy synthesizes an OCI manifest for each image of a pre-25 docker
// archive. Layers keep their bytes (and so their diffIDs); each is hashed
// once here to name it.
func (a *archiveSource) readLegacy() error {
	raw, err := a.tar.readSmall("manifest.json", manifest.MaxManifestSize)
	if err != nil {
		return err
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return fmt.Errorf("open %s: manifest.json: %w", a.loc, err)
	}
	for _, e := range entries {
		m, err := a.legacyManifest(e)
		if err != nil {
			return err
		}
		raw, _ := json.Marshal(m)
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
		a.legacy[d.Digest] = raw
		if len(e.RepoTags) == 0 {
			a.images = append(a.images, store.Image{Descriptor: d})
		}
		for _, tag := range e.RepoTags {
			a.images = append(a.images, store.Image{Name: tag, Descriptor: d})
		}
	}
	return nil
}

func (a *archiveSource) legacyManifest(e dockerManifestEntry) (ocispec.Manifest, error) {
	cfg, err := a.describeMember(e.Config, ocispec.MediaTypeImageConfig)
	if err != nil {
		return ocispec.Manifest{}, err
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{}}
	m.SchemaVersion = 2
	for _, l := range e.Layers {
		d, err := a.describeMember(l, "")
		if err != nil {
			return ocispec.Manifest{}, err
		}
		m.Layers = append(m.Layers, d)
	}
	return m, nil
}

// describeMember hashes an archive member; with no media type given it is
// a layer, typed by its compression.
func (a *archiveSource) describeMember(name, mt string) (ocispec.Descriptor, error) {
	sr, err := a.tar.open(name)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("open %s: manifest.json names %w", a.loc, err)
	}
	if mt == "" {
		var magic [4]byte
		n, _ := sr.ReadAt(magic[:], 0)
		mt = layerMediaType(magic[:n])
	}
	dg, err := digest.FromReader(io.NewSectionReader(sr, 0, sr.Size()))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("open %s: hash %s: %w", a.loc, name, err)
	}
	a.paths[dg] = name
	return ocispec.Descriptor{MediaType: mt, Digest: dg, Size: sr.Size()}, nil
}

func layerMediaType(magic []byte) string {
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		return ocispec.MediaTypeImageLayerGzip
	case len(magic) >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return ocispec.MediaTypeImageLayer
}

func (a *archiveSource) Images(_ context.Context) ([]store.Image, error) {
	if a.loc.Ref == "" {
		if len(a.images) == 0 {
			return nil, fmt.Errorf("open %s: %w: it holds no images", a.loc, store.ErrNotFound)
		}
		return a.images, nil
	}
	want, _ := store.NormalizeRef(a.loc.Ref)
	for _, im := range a.images {
		if im.Name == a.loc.Ref || (want != "" && nameEquals(im.Name, want)) || im.Descriptor.Digest.String() == a.loc.Ref {
			return []store.Image{im}, nil
		}
	}
	var names []string
	for _, im := range a.images {
		names = append(names, im.Name)
	}
	return nil, fmt.Errorf("open %s: image %q %w in the archive (it has: %s)", a.loc, a.loc.Ref, store.ErrNotFound, strings.Join(names, ", "))
}

func nameEquals(n, full string) bool {
	got, err := store.NormalizeRef(n)
	return err == nil && got == full
}

func (a *archiveSource) Fetch(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	if raw, ok := a.legacy[d.Digest]; ok {
		return io.NopCloser(bytesReader(raw)), nil
	}
	name, ok := a.paths[d.Digest]
	if !ok {
		if err := d.Digest.Validate(); err != nil {
			return nil, err
		}
		name = "blobs/" + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded()
	}
	sr, err := a.tar.open(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", a.loc, err)
	}
	return &verifying{r: sr, d: d, v: d.Digest.Verifier()}, nil
}

func (a *archiveSource) Close() error { return a.f.Close() }

// verifying checks size and digest as the content is read: an archive is
// untrusted input.
type verifying struct {
	r io.Reader
	d ocispec.Descriptor
	v digest.Verifier
	n int64
}

func (v *verifying) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.v.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF && (v.n != v.d.Size || !v.v.Verified()) {
		return n, fmt.Errorf("read blob %s: %w", v.d.Digest, store.ErrMismatch)
	}
	return n, err
}

func (v *verifying) Close() error { return nil }
