//go:build !imgtool_lean

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"github.com/imgtool/imgtool/build"
	"github.com/imgtool/imgtool/internal/flock"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// defaultCacheStorage bounds the build cache when --cache-keep-storage
// is not given: past it, the least recently used steps are evicted after
// a build.
const defaultCacheStorage = "10GiB"

// cacheOptions are build's cache flags.
type cacheOptions struct {
	noCacheFilter []string
	cacheFrom     []string
	cacheTo       []string
	keepStorage   string
}

func (c *cacheOptions) register(f *pflag.FlagSet) {
	f.StringSliceVar(&c.noCacheFilter, "no-cache-filter", nil, "do not use the build cache for these stages (names or numbers, comma-separated)")
	f.StringArrayVar(&c.cacheFrom, "cache-from", nil, "take cached steps from a registry: type=registry,ref=REF (or just REF) (repeatable)")
	f.StringArrayVar(&c.cacheTo, "cache-to", nil, "export this build's steps to a registry: type=registry,ref=REF[,mode=min|max][,ignore-error=true] (or just REF) (repeatable)")
	f.StringVar(&c.keepStorage, "cache-keep-storage", defaultCacheStorage, "bound of the local build cache; past it the least recently used steps are evicted")
}

// buildCacheDir is where the step cache and RUN --mount=type=cache
// directories live.
func (o *globalOptions) buildCacheDir() string { return filepath.Join(o.root, "cache", "build") }

// apply parses the cache flags into req.
func (c *cacheOptions) apply(req *build.Request, env transport.Env) error {
	req.NoCacheFilter = c.noCacheFilter
	for _, spec := range c.cacheFrom {
		ref, _, _, err := parseCacheSpec("--cache-from", spec)
		if err != nil {
			return err
		}
		req.CacheFrom = append(req.CacheFrom, &registryCache{ref: ref, env: env})
	}
	for _, spec := range c.cacheTo {
		ref, mode, ignoreErr, err := parseCacheSpec("--cache-to", spec)
		if err != nil {
			return err
		}
		req.CacheTo = append(req.CacheTo, build.CacheTarget{Dest: &registryCache{ref: ref, env: env}, Max: mode == "max", IgnoreError: ignoreErr})
	}
	return nil
}

// parseCacheSpec parses type=registry,ref=REF[,mode=min|max][,ignore-error=true]
// as buildx spells it, or a bare REF as buildah takes it.
func parseCacheSpec(flag, spec string) (ref, mode string, ignoreErr bool, err error) {
	mode = "min"
	if !strings.Contains(spec, "=") {
		ref = spec
	} else {
		for _, f := range strings.Split(spec, ",") {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "type":
				if v != "registry" {
					return "", "", false, usageError{fmt.Errorf("%s %q: only type=registry is supported", flag, spec)}
				}
			case "ref":
				ref = v
			case "mode":
				if v != "min" && v != "max" {
					return "", "", false, usageError{fmt.Errorf("%s %q: mode is min or max", flag, spec)}
				}
				mode = v
			case "ignore-error":
				if ignoreErr, err = strconv.ParseBool(v); err != nil {
					return "", "", false, usageError{fmt.Errorf("%s %q: ignore-error is true or false", flag, spec)}
				}
			case "image-manifest", "oci-mediatypes":
				// buildx attributes that imgtool's format makes moot.
			default:
				return "", "", false, usageError{fmt.Errorf("%s %q: unknown field %q; want type=registry,ref=REF[,mode=min|max]", flag, spec, k)}
			}
		}
	}
	if ref == "" {
		return "", "", false, usageError{fmt.Errorf("%s %q: name the registry reference, ref=REF", flag, spec)}
	}
	if _, err := store.NormalizeRef(ref); err != nil {
		return "", "", false, usageError{fmt.Errorf("%s: %w", flag, err)}
	}
	return ref, mode, ignoreErr, nil
}

// registryCache is a build cache kept in a registry under ref.
type registryCache struct {
	ref string
	env transport.Env
	src transport.Source
}

func (c *registryCache) String() string { return c.ref }

func (c *registryCache) loc() transport.Location {
	return transport.Location{Kind: transport.Registry, Ref: c.ref}
}

func (c *registryCache) Root(ctx context.Context) (ocispec.Descriptor, error) {
	src, err := transport.OpenSource(ctx, c.loc(), c.env)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	images, err := src.Images(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if len(images) != 1 {
		return ocispec.Descriptor{}, fmt.Errorf("%s names %d manifests", c.ref, len(images))
	}
	c.src = src
	return images[0].Descriptor, nil
}

func (c *registryCache) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	if c.src == nil {
		return nil, errors.New("fetch from the build cache before its manifest")
	}
	return c.src.Fetch(ctx, d)
}

func (c *registryCache) Push(ctx context.Context, b store.Blobs, blobs []ocispec.Descriptor, d ocispec.Descriptor, raw []byte) error {
	dst, err := transport.OpenDestination(ctx, c.loc(), c.env)
	if err != nil {
		return err
	}
	defer dst.Close()
	for _, bd := range blobs {
		open := func() (io.ReadCloser, error) { return b.Open(ctx, bd.Digest) }
		if err := dst.Write(ctx, bd, open); err != nil && !errors.Is(err, transport.ErrExists) {
			return err
		}
	}
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	if err := dst.Write(ctx, d, open); err != nil && !errors.Is(err, transport.ErrExists) {
		return err
	}
	return dst.Tag(ctx, c.ref, d, raw)
}

// openBuildCache opens the step cache under the data root.
func (o *globalOptions) openBuildCache() (*build.Cache, error) {
	return build.OpenCache(filepath.Join(o.buildCacheDir(), "steps"))
}

// boundBuildCache evicts the least recently used steps past limit bytes
// and deletes the layers only they held, unless another process is
// evicting or has the store open (then the next build or prune does).
func boundBuildCache(ctx context.Context, s *store.Store, c *build.Cache, limit int64) error {
	rep, err := c.Evict(ctx, limit, false)
	if errors.Is(err, flock.ErrBusy) {
		return nil
	}
	if err != nil || len(rep.Freed) == 0 {
		return err
	}
	_, err = pruneFreed(ctx, s, c, rep.Freed, true)
	if errors.Is(err, flock.ErrBusy) {
		return nil
	}
	return err
}

// pruneFreed deletes the blobs of freed that no image and no remaining
// cache record refer to.
func pruneFreed(ctx context.Context, s *store.Store, c *build.Cache, freed map[digest.Digest]bool, noWait bool) (store.PruneReport, error) {
	left, err := c.Layers(ctx)
	if err != nil {
		return store.PruneReport{}, err
	}
	return s.PruneWith(ctx, store.PruneOptions{
		Keep:   func(d digest.Digest) bool { return !freed[d] || left[d] },
		NoWait: noWait,
	})
}

// cacheLayers returns what the store's prune must keep for the build
// cache.
func (o *globalOptions) cacheLayers(ctx context.Context) (func(digest.Digest) bool, error) {
	c, err := o.openBuildCache()
	if err != nil {
		return nil, err
	}
	keep, err := c.Layers(ctx)
	if err != nil {
		return nil, err
	}
	return func(d digest.Digest) bool { return keep[d] }, nil
}

// pruneBuildCache is prune --cache: it evicts the least recently used
// steps until their layers take at most keep bytes (0: all of them, and
// the RUN --mount=type=cache directories no build is using), and deletes
// the layers no image uses.
func (o *globalOptions) pruneBuildCache(ctx context.Context, s *store.Store, keep int64) (build.EvictReport, store.PruneReport, error) {
	c, err := o.openBuildCache()
	if err != nil {
		return build.EvictReport{}, store.PruneReport{}, err
	}
	rep, err := c.Evict(ctx, keep, true)
	if err != nil {
		return rep, store.PruneReport{}, err
	}
	if keep == 0 {
		if err := removeCacheMounts(ctx, o.buildCacheDir()); err != nil {
			return rep, store.PruneReport{}, err
		}
	}
	srep, err := pruneFreed(ctx, s, c, rep.Freed, false)
	return rep, srep, err
}

// removeCacheMounts removes the RUN --mount=type=cache directories (c-*
// under dir) whose lock no running build holds.
func removeCacheMounts(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "c-") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		lf, err := os.OpenFile(p+".lock", os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		if flock.Lock(ctx, lf, unix.LOCK_EX, false) == nil {
			removeTree(p)
		}
		lf.Close()
	}
	return nil
}

// parseStorage parses a size such as 512MB or 10GiB (binary units, as
// buildx's --keep-storage).
func parseStorage(flag, s string) (int64, error) {
	n, err := units.RAMInBytes(s)
	if err != nil || n < 0 {
		return 0, usageError{fmt.Errorf("%s %q: want a size such as 512MB or 10GB", flag, s)}
	}
	return n, nil
}

// pruneCacheCmd prints what prune --cache did.
func (o *globalOptions) pruneCacheCmd(ctx context.Context, w io.Writer, s *store.Store, keep int64) error {
	rep, srep, err := o.pruneBuildCache(ctx, s, keep)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Build cache: removed %d steps (%s of layers), %d steps left (%s); deleted %d blobs, reclaimed %s\n",
		rep.Removed.Records, humanSize(rep.Removed.Bytes), rep.Left.Records, humanSize(rep.Left.Bytes), srep.Blobs, humanSize(srep.Bytes))
	return nil
}
