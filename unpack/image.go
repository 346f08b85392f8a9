package unpack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image unpacks every layer of the image manifest m (read from b) into
// dest, which must not exist. The layers are applied in a staging
// directory beside dest that is renamed to dest only once all of them
// applied and verified, so a failure never leaves a half-unpacked rootfs
// under dest's name.
func Image(ctx context.Context, b store.Blobs, m ocispec.Manifest, dest string, o Options) (Report, error) {
	raw, err := store.ReadManifest(ctx, b, m.Config)
	if err != nil {
		return Report{}, err
	}
	cfg, err := manifest.ParseConfig(raw)
	if err != nil {
		return Report{}, err
	}
	layers, err := manifest.Layers(m, cfg)
	if err != nil {
		return Report{}, err
	}
	if _, err := os.Lstat(dest); err == nil {
		return Report{}, fmt.Errorf("unpack to %s: it already exists", dest)
	} else if !errors.Is(err, os.ErrNotExist) {
		return Report{}, fmt.Errorf("unpack to %s: %w", dest, err)
	}
	stage, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".unpack-*")
	if err != nil {
		return Report{}, fmt.Errorf("unpack to %s: %w", dest, err)
	}
	os.Chmod(stage, 0o755)
	var total Report
	for _, l := range layers {
		rep, err := applyBlob(ctx, b, stage, l, o, "")
		total.Entries += rep.Entries
		total.Bytes += rep.Bytes
		total.Warnings = append(total.Warnings, rep.Warnings...)
		if err != nil {
			removeStaging(stage)
			return total, err
		}
	}
	if err := os.Rename(stage, dest); err != nil {
		removeStaging(stage)
		return total, fmt.Errorf("unpack to %s: %w", dest, err)
	}
	return total, nil
}

func applyBlob(ctx context.Context, b store.Blobs, root string, l manifest.LayerDesc, o Options, sibling string) (Report, error) {
	rc, err := b.Open(ctx, l.Digest)
	if err != nil {
		return Report{}, fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	defer rc.Close()
	return apply(ctx, root, rc, l.Descriptor, l.DiffID, o, sibling)
}

// removeStaging removes a failed unpack; directories a layer made
// read-only are opened up first.
func removeStaging(dir string) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.RemoveAll(dir)
}
