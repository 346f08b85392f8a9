//go:build !imgtool_lean

package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/unpack"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

func newPruneCmd(o *globalOptions) *cobra.Command {
	var cacheOnly bool
	var keepStorage string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete blobs and unpacked layers that no image in the local store references",
		Long: `Delete every blob no image of the local store (and no step of the build cache)
references, and the leftovers of interrupted pulls. It waits for other imgtool processes
using the store to finish.

Then empty the unpack cache (under ROOT/cache/unpack) of the layer chains no image
of the store is made of; chains a running container or build uses stay.

With --cache, empty the build cache instead: every cached step, the layers only the
cache held, and the RUN --mount=type=cache directories no build is using; with
--keep-storage SIZE, only the least recently used steps, until the layers of the
others take at most SIZE.`,
		Example: `  imgtool prune
  imgtool prune --cache
  imgtool prune --cache --keep-storage 5GB`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("keep-storage") && !cacheOnly {
				return usageError{errors.New("prune: --keep-storage bounds the build cache; use it with --cache")}
			}
			keep, err := parseStorage("--keep-storage", keepStorage)
			if err != nil {
				return err
			}
			return o.withStore(cmd, func(ctx context.Context, s *store.Store) error {
				if cacheOnly {
					return o.pruneCacheCmd(ctx, cmd.OutOrStdout(), s, keep)
				}
				keepCache, err := o.cacheLayers(ctx)
				if err != nil {
					return err
				}
				rep, err := s.PruneWith(ctx, store.PruneOptions{Keep: keepCache})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Deleted %d blobs, reclaimed %s\n", rep.Blobs, humanSize(rep.Bytes))
				freed, err := o.pruneUnpackCache(ctx, s)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Unpack cache: reclaimed %s\n", humanSize(freed))
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&cacheOnly, "cache", false, "prune the build cache instead")
	cmd.Flags().StringVar(&keepStorage, "keep-storage", "0", "with --cache: keep the most recently used steps whose layers fit in this size")
	return cmd
}

// pruneUnpackCache removes the unpack cache's chains that no image of s
// is made of.
func (o *globalOptions) pruneUnpackCache(ctx context.Context, s *store.Store) (int64, error) {
	images, err := s.List(ctx)
	if err != nil {
		return 0, err
	}
	roots := make([]ocispec.Descriptor, len(images))
	for i, im := range images {
		roots[i] = im.Descriptor
	}
	keep, err := unpack.KeepChains(ctx, s, roots)
	if err != nil {
		return 0, err
	}
	c, err := unpack.OpenCache(ctx, o.unpackCacheDir(), unpack.Options{})
	if err != nil {
		return 0, err
	}
	return c.Prune(ctx, keep)
}
