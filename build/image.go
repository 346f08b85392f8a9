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
	"github.com/imgtool/imgtool/unpack"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxConfigSize bounds an image config read from the store.
const maxConfigSize = 8 << 20

// baseImage is an image from the store that a stage starts from.
type baseImage struct {
	ref      string
	img      dockerspec.DockerOCIImage
	layers   []manifest.LayerDesc
	manifest ocispec.Manifest
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
	return &baseImage{ref: ref, img: img, layers: layers, manifest: m}, nil
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

// unpack materialises an image's layers as a stage's root filesystem.
func (r *buildRun) unpack(ctx context.Context, im *baseImage, dest string) error {
	if _, err := unpack.Image(ctx, r.b.Store, im.manifest, dest, unpack.Options{Rootless: r.rootless}); err != nil {
		return fmt.Errorf("unpack base image %s: %w", im.ref, err)
	}
	return nil
}

// unpackStage materialises an earlier stage's image as the root
// filesystem of a stage built FROM it.
func (r *buildRun) unpackStage(ctx context.Context, prev *stageResult, dest string) error {
	m, err := store.ImageManifest(ctx, r.b.Store, prev.desc)
	if err != nil {
		return err
	}
	if _, err := unpack.Image(ctx, r.b.Store, m, dest, unpack.Options{Rootless: r.rootless}); err != nil {
		return fmt.Errorf("unpack stage: %w", err)
	}
	return nil
}

// mkdirRootfs makes the empty root filesystem of a FROM scratch stage.
func mkdirRootfs(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("make root filesystem: %w", err)
	}
	return nil
}

// commit records the stage's history and writes its config and manifest
// into the store. The target stage gets the request's labels and
// annotations.
func (s *stageRun) commit(ctx context.Context) (*stageResult, error) {
	r := s.r
	img, err := manifest.Append(s.img.Image, s.steps, manifest.AppendOptions{Created: time.Now(), SourceDateEpoch: r.req.SourceDateEpoch})
	if err != nil {
		return nil, err
	}
	s.img.Image = img
	var opts manifest.ImageOptions
	if s.idx == r.target {
		if len(r.req.Labels) > 0 {
			if s.img.Config.Labels == nil {
				s.img.Config.Labels = map[string]string{}
			}
			maps.Copy(s.img.Config.Labels, r.req.Labels)
		}
		opts.Annotations = r.req.Annotations
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
	return &stageResult{img: s.img, layers: s.layers, desc: blobs.Manifest.Descriptor, config: blobs.Config.Descriptor, rootfs: s.rootfs}, nil
}
