package main

import (
	"context"
	"fmt"
	"os"

	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	"github.com/imgtool/imgtool/unpack"
	"github.com/spf13/cobra"
)

func newUnpackCmd(o *globalOptions) *cobra.Command {
	var rootless bool
	cmd := &cobra.Command{
		Use:   "unpack REF DIR",
		Short: "Unpack an image's filesystem into a new directory, like umoci unpack",
		Long: `Unpack the layers of image REF into DIR, which must not exist. REF is an image of
the local store, or a transport source (oci:DIR[:REF], oci-archive:FILE[:REF],
docker-archive:FILE[:REF], docker://REF), which is pulled into the store first.

Every path stays inside DIR whatever the layers hold. Without privilege (or with
--rootless) owners are recorded in the user.rootlesscontainers xattr instead of
set, and device nodes are skipped; what was skipped is listed.`,
		Example: `  imgtool unpack busybox ./rootfs
  imgtool unpack oci:./layout:app ./rootfs`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			loc, err := transport.ParseLocation(args[0], transport.Store)
			if err != nil {
				return usageError{err}
			}
			return o.withStore(cmd, func(ctx context.Context, s *store.Store) error {
				im, err := o.resolveOrPull(ctx, s, loc)
				if err != nil {
					return err
				}
				m, err := store.ImageManifest(ctx, s, im.Descriptor)
				if err != nil {
					return err
				}
				// Straight into DIR, not through the unpack cache: DIR is the
				// user's to change, so it could not share inodes with the
				// cache, and copying a cached tree costs as much as unpacking
				// it on filesystems without reflinks, while the cache would
				// keep a second copy of the image for nothing but imgtool run.
				rep, err := unpack.Image(ctx, s, m, args[1], unpack.Options{Rootless: rootless})
				for _, w := range rep.Warnings {
					fmt.Fprintf(os.Stderr, "warning: %s: %s\n", w.Path, w.Reason)
				}
				if err != nil {
					return err
				}
				if o.progress != "quiet" {
					fmt.Fprintf(os.Stderr, "Unpacked %d entries, %s, into %s\n", rep.Entries, humanSize(rep.Bytes), args[1])
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&rootless, "rootless", false, "record owners in xattrs instead of chowning, even with privilege")
	return cmd
}

// resolveOrPull finds a store image, pulling a transport source into the
// store first.
func (o *globalOptions) resolveOrPull(ctx context.Context, s *store.Store, loc transport.Location) (store.Image, error) {
	if loc.Kind == transport.Store {
		return s.Resolve(ctx, loc.Ref)
	}
	src, err := transport.OpenSource(ctx, loc, o.env(s))
	if err != nil {
		return store.Image{}, err
	}
	defer src.Close()
	images, err := src.Images(ctx)
	if err != nil {
		return store.Image{}, err
	}
	if len(images) != 1 {
		return store.Image{}, fmt.Errorf("%s holds %d images: name one with :REF", loc, len(images))
	}
	d, err := transport.Copy(ctx, src, transport.NewStoreDestination(s), images[0], images[0].Name, transport.Options{})
	if err != nil {
		return store.Image{}, err
	}
	return store.Image{Name: images[0].Name, Descriptor: d}, nil
}
