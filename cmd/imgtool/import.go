//go:build !imgtool_lean

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/imgtool/imgtool/build"
	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

type importOptions struct {
	tags        []string
	compression string
	level       int
	changes     []string
	platform    string
	epoch       string
	message     string
}

func newImportCmd(o *globalOptions) *cobra.Command {
	var opts importOptions
	cmd := &cobra.Command{
		Use:   "import ROOTFS_DIR|ROOTFS.tar[.gz|.zst]|- -t REF",
		Short: "Make a one-layer image from a directory or a tarball, like docker import",
		Long: `Make a one-layer image from a root filesystem: a directory, or a tar archive
(plain, gzip or zstd; - reads standard input), and name it with every -t.

Layers are zstd-compressed by default; --compression gzip is for clients that
cannot pull zstd (docker before 23, containerd before 1.5). With SOURCE_DATE_EPOCH
(or --source-date-epoch) set, the same tree always gives the same image digest.`,
		Example: `  imgtool import ./rootfs -t base:1 --change 'CMD ["/bin/sh"]'
  tar -C rootfs -c . | imgtool import - -t base:1
  SOURCE_DATE_EPOCH=0 imgtool import ./rootfs -t base:1 --compression gzip`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(opts.tags) == 0 {
				return usageError{errors.New("import: name the image with -t REF")}
			}
			for _, t := range opts.tags {
				if _, err := store.NormalizeRef(t); err != nil {
					return usageError{err}
				}
			}
			comp, err := layer.ParseCompression(opts.compression)
			if err != nil {
				return usageError{err}
			}
			plat, err := manifest.ParsePlatform(opts.platform)
			if err != nil {
				return usageError{err}
			}
			epoch, err := manifest.ParseSourceDateEpoch(opts.epoch)
			if err != nil {
				return usageError{err}
			}
			cfg, err := build.ApplyChanges(ocispec.ImageConfig{}, opts.changes)
			if err != nil {
				return err
			}
			return o.withStore(cmd, func(ctx context.Context, s *store.Store) error {
				d, err := importImage(ctx, s, args[0], importSpec{
					layer:  layer.Options{Compression: comp, Level: opts.level, SourceDateEpoch: epoch, Rootless: os.Geteuid() != 0},
					image:  ocispec.Image{Platform: plat, Config: cfg},
					epoch:  epoch,
					source: args[0], message: opts.message,
				})
				if err != nil {
					return err
				}
				for _, t := range opts.tags {
					if err := s.Set(ctx, t, d); err != nil {
						return err
					}
				}
				fmt.Fprintln(cmd.OutOrStdout(), d.Digest)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&opts.tags, "tag", "t", nil, "name of the image (repeatable)")
	f.StringVar(&opts.compression, "compression", "zstd", "layer compression: zstd, gzip or none")
	f.IntVar(&opts.level, "compression-level", 0, "compression level (default: zstd 3, gzip 6)")
	f.StringArrayVarP(&opts.changes, "change", "c", nil, "apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, ...; repeatable)")
	f.StringVar(&opts.platform, "platform", "", "platform to record, os/arch[/variant] (default: this machine's)")
	f.StringVar(&opts.epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "clamp times to this Unix time for reproducible images (env SOURCE_DATE_EPOCH)")
	f.StringVarP(&opts.message, "message", "m", "", "comment for the image's history")
	return cmd
}

type importSpec struct {
	layer   layer.Options
	image   ocispec.Image
	epoch   *time.Time
	source  string
	message string
}

// importImage writes the layer, config and manifest into s and returns the
// manifest's descriptor. Nothing is named: a failure leaves only blobs
// that prune reclaims.
func importImage(ctx context.Context, s *store.Store, src string, spec importSpec) (ocispec.Descriptor, error) {
	w, err := s.Writer(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer w.Cancel()
	ld, err := writeImportLayer(ctx, w, src, spec.layer)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if ld.Descriptor, err = w.Commit(ctx, ld.Descriptor); err != nil {
		return ocispec.Descriptor{}, err
	}
	createdBy := "imgtool import"
	if src == "-" {
		createdBy += " -"
	}
	img, err := manifest.Append(spec.image, []manifest.Step{{Layer: &ld, CreatedBy: createdBy, Comment: spec.message}},
		manifest.AppendOptions{Created: time.Now(), SourceDateEpoch: spec.epoch})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	blobs, err := manifest.Image(img, []manifest.LayerDesc{ld}, manifest.ImageOptions{})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, b := range []manifest.Blob{blobs.Config, blobs.Manifest} {
		if err := store.Put(ctx, s, b.Descriptor, bytes.NewReader(b.Data)); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	return blobs.Manifest.Descriptor, nil
}

// writeImportLayer writes a directory's tree, or a tarball's entries, as
// the layer.
func writeImportLayer(ctx context.Context, w io.Writer, src string, o layer.Options) (manifest.LayerDesc, error) {
	if src == "-" {
		return layer.FromTar(ctx, w, os.Stdin, o)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return manifest.LayerDesc{}, fmt.Errorf("import %s: %w", src, err)
	}
	if fi.IsDir() {
		ch, err := layer.Dir(src)
		if err != nil {
			return manifest.LayerDesc{}, err
		}
		return layer.Write(ctx, w, src, ch, o)
	}
	f, err := os.Open(src)
	if err != nil {
		return manifest.LayerDesc{}, fmt.Errorf("import %s: %w", src, err)
	}
	defer f.Close()
	d, err := layer.FromTar(ctx, w, f, o)
	if err != nil {
		return manifest.LayerDesc{}, fmt.Errorf("import %s: %w", src, err)
	}
	return d, nil
}
