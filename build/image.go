package build

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxConfigSize bounds an image config read from the store.
const maxConfigSize = 8 << 20

// baseImage is an image from the store that a stage starts from.
type baseImage struct {
	ref      string
	digest   digest.Digest // of its manifest
	img      dockerspec.DockerOCIImage
	layers   []manifest.LayerDesc
	manifest ocispec.Manifest
}

// sharedBase is baseImage(ref), found (or pulled) once for all the
// stages that name ref, which may ask at the same time; st is the step
// of the first to ask. Its image is shared: a stage clones it.
func (r *buildRun) sharedBase(ctx context.Context, ref string, st *step) (*baseImage, error) {
	r.mu.Lock()
	l := r.bases[ref]
	if l == nil {
		l = &lazy[*baseImage]{}
		r.bases[ref] = l
	}
	r.mu.Unlock()
	return l.get(func() (*baseImage, error) { return r.baseImage(ctx, ref, st) })
}

// baseImage finds ref in the store, pulling it when it is missing.
func (r *buildRun) baseImage(ctx context.Context, ref string, st *step) (*baseImage, error) {
	s := r.b.Store
	im, err := s.Resolve(ctx, ref)
	if r.req.PullAlways && r.b.Pull != nil && !strings.HasPrefix(ref, "sha256:") {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) && r.b.Pull != nil {
		st.logf("pulling %s", ref)
		if err := r.b.Pull(ctx, ref); err != nil {
			return nil, fmt.Errorf("pull base image %s: %w", ref, err)
		}
		im, err = s.Resolve(ctx, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("base image %s: %w", ref, err)
	}
	m, err := store.ImageManifest(ctx, s, im.Descriptor)
	if err != nil {
		return nil, fmt.Errorf("base image %s: %w", ref, err)
	}
	raw, err := readBlob(ctx, s, m.Config)
	if err != nil {
		return nil, fmt.Errorf("base image %s: config: %w", ref, err)
	}
	oci, err := manifest.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("base image %s: %w", ref, err)
	}
	if !manifest.Match(r.req.Platform, oci.Platform) {
		return nil, fmt.Errorf("base image %s is for %s, and only %s can be built here", ref, manifest.FormatPlatform(oci.Platform), manifest.FormatPlatform(r.req.Platform))
	}
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &img); err != nil {
		return nil, fmt.Errorf("base image %s: config: %w", ref, err)
	}
	img.Image.Config = ocispec.ImageConfig{}
	layers, err := manifest.Layers(m, oci)
	if err != nil {
		return nil, fmt.Errorf("base image %s: %w", ref, err)
	}
	return &baseImage{ref: ref, digest: im.Descriptor.Digest, img: img, layers: layers, manifest: m}, nil
}

func readBlob(ctx context.Context, s store.Blobs, d ocispec.Descriptor) ([]byte, error) {
	if d.Size > maxConfigSize {
		return nil, fmt.Errorf("blob %s is %d bytes, more than the %d allowed", d.Digest, d.Size, maxConfigSize)
	}
	rc, err := s.Open(ctx, d.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, d.Size))
}

// mkdirRootfs makes the empty root filesystem of a FROM scratch stage.
func mkdirRootfs(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("make root filesystem: %w", err)
	}
	return nil
}

// commit records the stage's history and, for the target stage, writes
// its config and manifest into the store, with the request's labels and
// annotations. Each history entry has the time its step first ran, so
// that a rebuild from the cache gives the same image.
func (s *stageRun) commit(ctx context.Context) (*stageResult, error) {
	r := s.r
	if err := s.settle(); err != nil {
		return nil, err
	}
	img := s.img.Image
	var err error
	if len(s.steps) == 0 {
		img, err = manifest.Append(img, nil, manifest.AppendOptions{Created: time.Now(), SourceDateEpoch: r.req.SourceDateEpoch})
	}
	for i, st := range s.steps {
		if err != nil {
			break
		}
		img, err = manifest.Append(img, []manifest.Step{st}, manifest.AppendOptions{Created: s.times[i], SourceDateEpoch: r.req.SourceDateEpoch})
	}
	if err != nil {
		return nil, err
	}
	s.img.Image = img
	res := &stageResult{img: s.img, layers: s.layers, key: s.key, rootfs: s.rootfs}
	if s.idx != r.target {
		return res, nil
	}
	var opts manifest.ImageOptions
	if len(r.req.Labels) > 0 {
		if s.img.Config.Labels == nil {
			s.img.Config.Labels = map[string]string{}
		}
		maps.Copy(s.img.Config.Labels, r.req.Labels)
	}
	opts.Annotations = r.req.Annotations
	// The image needs every layer in the store, also those a
	// --cache-from hit only named.
	if err := r.ensureBlobs(ctx, s.layers); err != nil {
		return nil, err
	}
	blobs, err := manifest.DockerImage(s.img, s.layers, opts)
	if err != nil {
		return nil, err
	}
	for _, b := range []manifest.Blob{blobs.Config, blobs.Manifest} {
		if err := store.Put(ctx, r.b.Store, b.Descriptor, bytes.NewReader(b.Data)); err != nil {
			return nil, fmt.Errorf("write image: %w", err)
		}
	}
	res.img, res.desc, res.config = s.img, blobs.Manifest.Descriptor, blobs.Config.Descriptor
	return res, nil
}
