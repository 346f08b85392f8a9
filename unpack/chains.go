package unpack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// KeepChains returns, for Cache.Prune, the chains the images under roots
// may ask for: every prefix chain of every image manifest reachable from
// them (each platform of an index, not only the native one, since
// `--platform` may pick any).
func KeepChains(ctx context.Context, b store.Blobs, roots []ocispec.Descriptor) (func(digest.Digest) bool, error) {
	live := map[digest.Digest]bool{}
	err := store.Reachable(ctx, b, roots, func(d ocispec.Descriptor) error {
		if !manifest.IsManifest(d.MediaType) {
			return nil
		}
		raw, err := store.ReadManifest(ctx, b, d)
		if errors.Is(err, store.ErrNotFound) {
			return nil // a platform not pulled: none of its chains can be built
		} else if err != nil {
			return err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("read manifest %s: %w", d.Digest, err)
		}
		rawCfg, err := store.ReadManifest(ctx, b, m.Config)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		// Only the diff_ids matter here: an artifact's or an odd config
		// that Rootfs's callers would refuse has no chains to keep, and
		// must not stop the prune.
		var cfg struct {
			RootFS struct {
				DiffIDs []digest.Digest `json:"diff_ids"`
			} `json:"rootfs"`
		}
		if json.Unmarshal(rawCfg, &cfg) != nil {
			return nil
		}
		for _, c := range identity.ChainIDs(cfg.RootFS.DiffIDs) {
			live[c] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the chains of the store's images: %w", err)
	}
	return func(d digest.Digest) bool { return live[d] }, nil
}
