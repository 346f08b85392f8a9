package build

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A build cache travels through a registry as one OCI image manifest,
// which any registry accepts: its config blob holds the records (step
// key → layer, time, instruction) and its layers are the records'
// layers, as they are in the store. Nothing in it is read until a step's
// key matches, and a layer is only fetched when a later step that misses
// needs the filesystem, or the image being built is made of it.
const (
	CacheArtifactType    = "application/vnd.imgtool.build.cache.v1"
	CacheConfigMediaType = "application/vnd.imgtool.build.cache.config.v1+json"
)

// Bounds on what is read of a registry's cache.
const (
	maxCacheManifest = 4 << 20
	maxCacheConfig   = 64 << 20
)

// CacheSource is a registry's build cache, for --cache-from.
type CacheSource interface {
	// Root returns the descriptor of the cache's manifest.
	Root(ctx context.Context) (ocispec.Descriptor, error)
	// Fetch opens a blob or manifest of the cache; the caller verifies it.
	Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error)
	String() string
}

// CachePusher uploads a cache: the blobs (read from b) first, then the
// manifest raw, which d describes.
type CachePusher interface {
	Push(ctx context.Context, b store.Blobs, blobs []ocispec.Descriptor, d ocispec.Descriptor, raw []byte) error
	String() string
}

// CacheTarget is one --cache-to.
type CacheTarget struct {
	Dest CachePusher
	// Max exports the steps of every stage the build ran (mode=max);
	// else only those of the stages the image is made of (mode=min).
	Max bool
	// IgnoreError makes a failed export a warning, not a failed build
	// (buildx's ignore-error=true).
	IgnoreError bool
}

// cacheConfig is the config blob of an exported cache.
type cacheConfig struct {
	Records []Record `json:"records"`
}

// importCache loads the records of every --cache-from. A cache that
// cannot be read is skipped with a warning, as buildx does: the build
// then runs the steps itself.
func (r *buildRun) importCache(ctx context.Context) error {
	r.remote = map[digest.Digest]Record{}
	r.fetchFrom = map[digest.Digest]CacheSource{}
	for _, src := range r.req.CacheFrom {
		st := r.progress.start("[internal] importing cache manifest from " + src.String())
		n, err := r.importFrom(ctx, src)
		if err != nil {
			if ctx.Err() != nil {
				st.done(err)
				return ctx.Err()
			}
			st.logf("[Warning] cannot import the build cache: %v", err)
		} else {
			st.logf("%d cached steps", n)
		}
		st.done(nil)
	}
	return nil
}

func (r *buildRun) importFrom(ctx context.Context, src CacheSource) (int, error) {
	d, err := src.Root(ctx)
	if err != nil {
		return 0, err
	}
	if d.MediaType != ocispec.MediaTypeImageManifest {
		return 0, fmt.Errorf("%s is a %s, not an imgtool build cache", src, d.MediaType)
	}
	raw, err := fetchVerified(ctx, src, d, maxCacheManifest)
	if err != nil {
		return 0, err
	}
	m, err := parseCacheManifest(raw)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", src, err)
	}
	raw, err = fetchVerified(ctx, src, m.Config, maxCacheConfig)
	if err != nil {
		return 0, err
	}
	recs, err := cacheRecords(m, raw)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", src, err)
	}
	for _, rec := range recs {
		if rec.Layer != nil {
			r.fetchFrom[rec.Layer.Digest] = src
		}
		r.remote[rec.Key] = rec
	}
	return len(recs), nil
}

// parseCacheManifest reads the manifest of a registry's build cache.
func parseCacheManifest(raw []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("manifest: %w", err)
	}
	if m.Config.MediaType != CacheConfigMediaType {
		return m, fmt.Errorf("not an imgtool build cache (config %q)", m.Config.MediaType)
	}
	return m, nil
}

// cacheRecords reads the records of a cache's config blob, keeping those
// that are well-formed and whose layer the manifest lists (with the
// manifest's descriptor: only what it lists is ever fetched).
func cacheRecords(m ocispec.Manifest, raw []byte) ([]Record, error) {
	var cfg cacheConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	listed := map[digest.Digest]ocispec.Descriptor{}
	for _, l := range m.Layers {
		if l.Digest.Validate() == nil && l.Size >= 0 {
			listed[l.Digest] = l
		}
	}
	var out []Record
	for _, rec := range cfg.Records {
		if rec.Key.Validate() != nil || rec.Key.Algorithm() != digest.SHA256 {
			continue
		}
		if rec.Layer != nil {
			l, ok := listed[rec.Layer.Digest]
			if !ok || rec.Layer.DiffID.Validate() != nil || l.Size != rec.Layer.Size {
				continue
			}
			rec.Layer.Descriptor = l
		}
		out = append(out, rec)
	}
	return out, nil
}

// fetchVerified reads a small blob, checking its size and digest.
func fetchVerified(ctx context.Context, src CacheSource, d ocispec.Descriptor, limit int64) ([]byte, error) {
	if d.Size > limit || d.Size < 0 {
		return nil, fmt.Errorf("%s: %s is %d bytes, more than the %d allowed", src, d.Digest, d.Size, limit)
	}
	if err := d.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	rc, err := src.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", src, d.Digest, err)
	}
	if int64(len(raw)) != d.Size || d.Digest.Algorithm().FromBytes(raw) != d.Digest {
		return nil, fmt.Errorf("%s: %s: %w", src, d.Digest, store.ErrMismatch)
	}
	return raw, nil
}

var errNothingToExport = errors.New("no step to export")

// exportCache writes the records of this build to every --cache-to,
// whatever became of the build: a failed build exports the steps that
// ran before the failure.
func (r *buildRun) exportCache(ctx context.Context) error {
	var errs []error
	for _, t := range r.req.CacheTo {
		st := r.progress.start("exporting cache to " + t.Dest.String())
		err := r.exportTo(ctx, t)
		if errors.Is(err, errNothingToExport) {
			st.logf("no step to export: the cache there is left as it was")
			err = nil
		}
		if err != nil && t.IgnoreError {
			st.logf("[Warning] cannot export the build cache: %v", err)
			err = nil
		}
		st.done(err)
		if err != nil {
			errs = append(errs, fmt.Errorf("export build cache to %s: %w", t.Dest, err))
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

func (r *buildRun) exportTo(ctx context.Context, t CacheTarget) error {
	keep := r.imageStages()
	var cfg cacheConfig
	var layers []ocispec.Descriptor
	seen, seenLayer := map[digest.Digest]bool{}, map[digest.Digest]bool{}
	// In stage order, whichever order the stages ran in, so that one
	// build exports one cache.
	trs := slices.Clone(r.touched)
	slices.SortStableFunc(trs, func(a, b touched) int { return cmp.Compare(a.stage, b.stage) })
	for _, tr := range trs {
		if seen[tr.Key] || (!t.Max && !keep[tr.stage]) {
			continue
		}
		seen[tr.Key] = true
		if l := tr.Layer; l != nil && !seenLayer[l.Digest] {
			if err := r.ensureBlobs(ctx, []manifest.LayerDesc{*l}); err != nil {
				return err
			}
			seenLayer[l.Digest] = true
			layers = append(layers, l.Descriptor)
		}
		cfg.Records = append(cfg.Records, tr.Record)
	}
	if len(cfg.Records) == 0 {
		// Never replace a cache with an empty one (a build that failed
		// before its first step).
		return errNothingToExport
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgDesc := ocispec.Descriptor{MediaType: CacheConfigMediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if err := store.Put(ctx, r.b.Store, cfgDesc, bytes.NewReader(raw)); err != nil {
		return err
	}
	if layers == nil {
		layers = []ocispec.Descriptor{}
	}
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest, ArtifactType: CacheArtifactType,
		Config: cfgDesc, Layers: layers,
	}
	m.SchemaVersion = 2
	mraw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: CacheArtifactType, Digest: digest.FromBytes(mraw), Size: int64(len(mraw))}
	return t.Dest.Push(ctx, r.b.Store, append([]ocispec.Descriptor{cfgDesc}, layers...), md, mraw)
}

// imageStages are the stages the target's image is made of: the target,
// the stage it is FROM, and so on.
func (r *buildRun) imageStages() map[int]bool {
	out := map[int]bool{}
	if r.meta == nil || r.target < 0 || r.target >= len(r.plan.stages) {
		return out
	}
	for i := r.target; i >= 0 && !out[i]; {
		out[i] = true
		base, err := r.meta.expander(r.plan.escape)(r.plan.stages[i].BaseName)
		if err != nil {
			break
		}
		j, ok := r.plan.stageIndex(base, i)
		if !ok {
			break
		}
		i = j
	}
	return out
}
