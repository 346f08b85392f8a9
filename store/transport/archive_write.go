package transport

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/imgtool/imgtool/internal/atomicfile"
	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// archiveDest writes an OCI archive, or a docker archive in the layout
// docker 25 writes: an OCI layout plus manifest.json and repositories, so
// that both `docker load` (any version) and OCI tools read it. The file
// appears under its name only after Close.
type archiveDest struct {
	loc  Location
	out  *os.File
	file *atomicfile.File // nil when writing to stdout
	tw   *tar.Writer
	mu   sync.Mutex
	have map[digest.Digest]bool
	idx  ocispec.Index
	// docker archive only
	entries []dockerManifestEntry
	repos   map[string]map[string]string
}

func openArchiveDest(loc Location) (Destination, error) {
	a := &archiveDest{loc: loc, have: map[digest.Digest]bool{}, repos: map[string]map[string]string{}}
	a.idx = ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	if loc.Path == "-" {
		a.out = os.Stdout
	} else {
		f, err := atomicfile.Create(loc.Path, 0o666)
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", loc, err)
		}
		a.out, a.file = f.File, f
	}
	a.tw = tar.NewWriter(a.out)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			a.Abort()
			return nil, fmt.Errorf("write %s: %w", loc, err)
		}
	}
	return a, nil
}

func (a *archiveDest) Has(_ context.Context, d ocispec.Descriptor) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.have[d.Digest], nil
}

// Write appends a blob. A tar is sequential, so blobs are written one at a
// time; the content is verified as it is written, and a mismatch fails the
// whole archive (Abort removes it).
func (a *archiveDest) Write(_ context.Context, d ocispec.Descriptor, open Opener) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.have[d.Digest] {
		return nil
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	h := &tar.Header{Typeflag: tar.TypeReg, Name: "blobs/" + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded(), Size: d.Size, Mode: 0o644, ModTime: time.Unix(0, 0)}
	if err := a.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write %s: %w", a.loc, err)
	}
	v := d.Digest.Verifier()
	n, err := io.Copy(io.MultiWriter(a.tw, v), io.LimitReader(rc, d.Size))
	if err != nil {
		return fmt.Errorf("write %s: blob %s: %w", a.loc, d.Digest, err)
	}
	if n != d.Size || !v.Verified() {
		return fmt.Errorf("write %s: blob %s: %w", a.loc, d.Digest, store.ErrMismatch)
	}
	a.have[d.Digest] = true
	return nil
}

func (a *archiveDest) Tag(_ context.Context, ref string, d ocispec.Descriptor, raw []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	entry := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
	var parsed name.Reference
	if ref != "" {
		var err error
		if parsed, err = name.ParseReference(ref); err != nil {
			return fmt.Errorf("write %s: %w", a.loc, err)
		}
		full := store.Canonical(parsed)
		entry.Annotations = map[string]string{annotationImageName: full}
		// An OCI archive may hold images of many repositories (an
		// air-gap bundle), so ref.name is the full reference, as crane
		// writes it; a docker archive keeps docker's bare tag.
		if a.loc.Kind == OCIArchive {
			entry.Annotations[ocispec.AnnotationRefName] = full
		} else if _, ok := parsed.(name.Tag); ok {
			entry.Annotations[ocispec.AnnotationRefName] = parsed.Identifier()
		}
	}
	a.idx.Manifests = append(a.idx.Manifests, entry)
	if a.loc.Kind != DockerArchive {
		return nil
	}
	if !manifest.IsManifest(d.MediaType) {
		return fmt.Errorf("write %s: a docker archive holds single-platform images, and %s is an index: save without --all-platforms, or use --format oci", a.loc, d.Digest)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("write %s: %w", a.loc, err)
	}
	e := dockerManifestEntry{Config: blobPath(m.Config.Digest), Layers: []string{}}
	for _, l := range m.Layers {
		e.Layers = append(e.Layers, blobPath(l.Digest))
	}
	if tag, ok := parsed.(name.Tag); ok {
		repo, familiar := familiarName(tag)
		e.RepoTags = append(e.RepoTags, familiar)
		if a.repos[repo] == nil {
			a.repos[repo] = map[string]string{}
		}
		if len(m.Layers) > 0 {
			a.repos[repo][tag.TagStr()] = m.Layers[len(m.Layers)-1].Digest.Encoded()
		}
	}
	a.entries = append(a.entries, e)
	return nil
}

func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// familiarName spells a tag as docker does in RepoTags: "busybox:latest"
// for docker.io/library/busybox:latest.
func familiarName(t name.Tag) (repo, full string) {
	repo = t.Context().RegistryStr() + "/" + t.Context().RepositoryStr()
	if t.Context().RegistryStr() == name.DefaultRegistry {
		repo = strings.TrimPrefix(t.Context().RepositoryStr(), "library/")
	}
	return repo, repo + ":" + t.TagStr()
}

func (a *archiveDest) writeJSON(name string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(raw)), Mode: 0o644, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err = a.tw.Write(raw)
	return err
}

// Close writes the index files, then makes the archive visible.
func (a *archiveDest) Close() error {
	err := a.writeJSON(ocispec.ImageLayoutFile, ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err == nil {
		err = a.writeJSON(ocispec.ImageIndexFile, a.idx)
	}
	if err == nil && a.loc.Kind == DockerArchive {
		if err = a.writeJSON("manifest.json", a.entries); err == nil {
			err = a.writeJSON("repositories", a.repos)
		}
	}
	if err == nil {
		err = a.tw.Close()
	}
	if err != nil {
		a.Abort()
		return fmt.Errorf("write %s: %w", a.loc, err)
	}
	if a.file == nil {
		return nil
	}
	return a.file.Commit()
}

// Abort removes the unfinished archive.
func (a *archiveDest) Abort() error {
	if a.file != nil {
		a.file.Abort()
	}
	return nil
}
