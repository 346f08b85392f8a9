package store

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one entry of the store's index.
type Image struct {
	// Name is the fully qualified reference, or "" for an unnamed image.
	Name       string
	Descriptor ocispec.Descriptor
}

// NormalizeRef turns what a user typed into the fully qualified reference
// the store names images by: "busybox" becomes
// "docker.io/library/busybox:latest", as docker and podman spell it.
func NormalizeRef(s string) (string, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return "", fmt.Errorf("parse reference %q: %w (want [REGISTRY/]REPOSITORY[:TAG|@DIGEST], in lower case)", s, err)
	}
	return Canonical(ref), nil
}

// Canonical spells a parsed reference with "docker.io" rather than
// go-containerregistry's "index.docker.io".
func Canonical(ref name.Reference) string {
	reg := ref.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	sep := ":"
	if _, ok := ref.(name.Digest); ok {
		sep = "@"
	}
	return reg + "/" + ref.Context().RepositoryStr() + sep + ref.Identifier()
}

// hexPrefix compiles on first use, not in every imgtool process's start.
var hexPrefix = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(sha256:)?[0-9a-f]{4,64}$`) })

// List returns every image in the store, in index order.
func (s *Store) List(_ context.Context) ([]Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(idx.Manifests))
	for _, d := range idx.Manifests {
		out = append(out, Image{Name: d.Annotations[ocispec.AnnotationRefName], Descriptor: d})
	}
	return out, nil
}

// Resolve finds an image by reference ("busybox", "reg/app:1"), by
// digest, or by a unique prefix of its digest as docker accepts image IDs.
// The error wraps ErrNotFound when nothing matches.
func (s *Store) Resolve(ctx context.Context, ref string) (Image, error) {
	images, err := s.List(ctx)
	if err != nil {
		return Image{}, err
	}
	for _, im := range images {
		if im.Name == ref {
			return im, nil
		}
	}
	if full, err := NormalizeRef(ref); err == nil {
		for _, im := range images {
			if im.Name == full {
				return im, nil
			}
		}
	}
	if !hexPrefix().MatchString(ref) {
		return Image{}, fmt.Errorf("image %q: %w in the local store (see imgtool images, or pull it first)", ref, ErrNotFound)
	}
	prefix := ref
	if !strings.HasPrefix(prefix, "sha256:") {
		prefix = "sha256:" + prefix
	}
	var found []Image
	for _, im := range images {
		if strings.HasPrefix(im.Descriptor.Digest.String(), prefix) &&
			!slices.ContainsFunc(found, func(f Image) bool { return f.Descriptor.Digest == im.Descriptor.Digest }) {
			found = append(found, im)
		}
	}
	switch len(found) {
	case 0:
		return Image{}, fmt.Errorf("image %q: %w in the local store (see imgtool images, or pull it first)", ref, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Image{}, fmt.Errorf("image %q is ambiguous: it prefixes %s and %s; give more of the digest", ref, found[0].Descriptor.Digest, found[1].Descriptor.Digest)
}

// Set names d as ref (replacing what ref named before), or, with an empty
// ref, records d unnamed unless it is already in the index. The content of
// d must already be in the store.
func (s *Store) Set(ctx context.Context, ref string, d ocispec.Descriptor) error {
	if ref != "" {
		full, err := NormalizeRef(ref)
		if err != nil {
			return err
		}
		ref = full
	}
	return s.SetName(ctx, ref, d)
}

// SetName is Set without normalizing the name, for layouts that other
// tools read, where the OCI convention names images by bare tags ("1.0").
func (s *Store) SetName(ctx context.Context, ref string, d ocispec.Descriptor) error {
	if _, err := s.Stat(ctx, d.Digest); err != nil {
		return fmt.Errorf("tag %s: %w", d.Digest, err)
	}
	entry := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, Platform: d.Platform, ArtifactType: d.ArtifactType}
	return s.updateIndex(ctx, func(idx *ocispec.Index) error {
		if ref == "" {
			if slices.ContainsFunc(idx.Manifests, func(m ocispec.Descriptor) bool { return m.Digest == d.Digest }) {
				return nil
			}
		} else {
			entry.Annotations = map[string]string{ocispec.AnnotationRefName: ref}
			idx.Manifests = slices.DeleteFunc(idx.Manifests, func(m ocispec.Descriptor) bool {
				return m.Annotations[ocispec.AnnotationRefName] == ref ||
					(m.Digest == d.Digest && m.Annotations[ocispec.AnnotationRefName] == "")
			})
		}
		idx.Manifests = append(idx.Manifests, entry)
		return nil
	})
}

// Untag removes ref from the index. When ref names an image by digest,
// every name of that image goes. It returns the names removed. Blobs stay
// until Prune.
func (s *Store) Untag(ctx context.Context, ref string) ([]string, error) {
	var removed []string
	err := s.updateIndex(ctx, func(idx *ocispec.Index) error {
		removed = nil
		im, err := s.Resolve(ctx, ref)
		if err != nil {
			return err
		}
		byName := im.Name != "" && nameMatches(ref, im.Name)
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(m ocispec.Descriptor) bool {
			n := m.Annotations[ocispec.AnnotationRefName]
			drop := (byName && n == im.Name) || (!byName && m.Digest == im.Descriptor.Digest)
			if drop {
				removed = append(removed, displayName(n, m.Digest))
			}
			return drop
		})
		return nil
	})
	return removed, err
}

func nameMatches(ref, full string) bool {
	n, err := NormalizeRef(ref)
	return err == nil && n == full
}

func displayName(n string, d digest.Digest) string {
	if n == "" {
		return d.String()
	}
	return n
}
