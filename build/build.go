package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/unpack"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Builder builds images into Store. Its fields are what a build needs
// from outside; none holds per-build state, so one Builder may run
// several builds.
type Builder struct {
	Store *store.Store
	// Executor runs RUN steps (nil: a Dockerfile with RUN fails).
	Executor Executor
	// TempDir is where each build makes its temporary directory
	// (build-*), removed when the build ends, whatever the outcome.
	TempDir string
	// CacheDir keeps RUN --mount=type=cache directories between builds
	// ("" : under TempDir, so kept for this build only).
	CacheDir string
	// Progress receives plain progress lines (nil: none).
	Progress io.Writer
	// Pull fetches an image that FROM or COPY --from names and the store
	// lacks (nil: such a build fails with a message saying to pull it).
	Pull func(ctx context.Context, ref string) error
	// HTTPClient fetches ADD URLs (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Cache is the step cache (nil: every step runs, nothing is kept).
	Cache *Cache
	// Unpack, when set, is where stage root filesystems are unpacked
	// from (a copy of its entry), so that a base image is unpacked once
	// for every build; nil unpacks each build's layers itself.
	Unpack *unpack.Cache
	// Jobs bounds how many stages build at once (0: one a core, at
	// least two).
	Jobs int
	// treeCopy makes every COPY write through the stage's tree, never
	// streamed (copystream.go), for tests that compare the two; streamed,
	// when set, counts the COPYs streamed.
	treeCopy bool
	streamed *atomic.Int32
	// bgHook, for tests, runs before each layer written in the background
	// (bglayer.go); an error fails it.
	bgHook func(ctx context.Context, createdBy string) error
	// keyReads, for tests, counts the files keying a step reads.
	keyReads *atomic.Int64
}

// Request is one build.
type Request struct {
	// ContextDir is the build context.
	ContextDir string
	// Dockerfile is the Dockerfile's content; DockerfileName names it in
	// messages; DockerfilePath, when the Dockerfile is a file, is where
	// <Dockerfile>.dockerignore is looked for.
	Dockerfile     []byte
	DockerfileName string
	DockerfilePath string
	// BuildArgs are --build-arg values.
	BuildArgs map[string]string
	// Target is the stage to build (default: the last).
	Target string
	// Platform must be the native one (zero: native); imgtool does not
	// emulate other architectures.
	Platform ocispec.Platform
	// SourceDateEpoch, when set, makes the image reproducible: every
	// time in config, history and layers is clamped to it.
	SourceDateEpoch *time.Time
	// Labels are added to the final image's config, Annotations to its
	// manifest.
	Labels      map[string]string
	Annotations map[string]string
	// Compression of new layers (zero: zstd).
	Compression layer.Compression
	// Secrets maps a RUN --mount=type=secret id to the host file holding it.
	Secrets map[string]string
	// SSH maps a RUN --mount=type=ssh id to the agent it forwards
	// (SSHSocket, SSHKeys).
	SSH map[string]SSHAgent
	// PullAlways fetches every base image again, even when the store has
	// it (docker build --pull), so that a moved tag is followed.
	PullAlways bool
	// NoCache looks no step up in the cache (steps are still recorded);
	// NoCacheFilter does so for the stages it names only.
	NoCache       bool
	NoCacheFilter []string
	// CacheFrom are registries' build caches to take steps from
	// (--cache-from), CacheTo where to export this build's steps to
	// (--cache-to), also when the build fails.
	CacheFrom []CacheSource
	CacheTo   []CacheTarget
}

// Result is the built image, its blobs in the store.
type Result struct {
	Manifest ocispec.Descriptor // carries the platform
	Config   ocispec.Descriptor
	// Ran counts the steps that ran rather than came from the cache.
	Ran int
}

// Build builds req's target stage and the stages it needs, writes the
// image's blobs into the store and returns the image; naming it is the
// caller's. Temporary files go in a build-* directory under TempDir that
// is removed on return, also when ctx is cancelled.
func (b *Builder) Build(ctx context.Context, req Request) (Result, error) {
	if req.DockerfileName == "" {
		req.DockerfileName = "Dockerfile"
	}
	native := manifest.Native()
	if req.Platform.OS == "" {
		req.Platform = native
	}
	if !manifest.Match(native, req.Platform) {
		return Result{}, fmt.Errorf("build for %s: only this machine's platform (%s) can be built; imgtool does not emulate others", manifest.FormatPlatform(req.Platform), manifest.FormatPlatform(native))
	}
	p, err := parseDockerfile(req.DockerfileName, req.Dockerfile)
	if err != nil {
		return Result{}, err
	}
	patterns, err := readIgnore(req.ContextDir, req.DockerfilePath)
	if err != nil {
		return Result{}, err
	}
	bctx, err := newContext(req.ContextDir, patterns)
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(b.TempDir, 0o700); err != nil {
		return Result{}, fmt.Errorf("make temporary directory: %w", err)
	}
	tmp, err := os.MkdirTemp(b.TempDir, "build-")
	if err != nil {
		return Result{}, fmt.Errorf("make temporary directory: %w", err)
	}
	defer removeAll(tmp)
	var r *buildRun
	defer func() {
		for _, l := range r.leases {
			l.Release()
		}
	}()
	r = &buildRun{
		b: b, req: req, plan: p, context: bctx, tmp: tmp,
		rootless:   os.Geteuid() != 0,
		progress:   &progress{w: b.Progress},
		images:     map[string]*lazy[*source]{},
		bases:      map[string]*lazy[*baseImage]{},
		usedArgs:   map[string]bool{},
		gitCommits: map[string]gitCommit{},
		gitAuths:   map[string]*gitAuth{},
		bg:         make(chan struct{}, 1),
	}
	defer r.closeGit()
	if r.progress.w == nil {
		r.progress.w = io.Discard
	}
	r.layerOpts = layer.Options{Compression: req.Compression, SourceDateEpoch: req.SourceDateEpoch, Rootless: r.rootless}
	r.noRecords = b.Cache == nil || b.Cache.empty()
	r.stat = newStatCache(b.Cache, bctx.t.root)
	defer func() {
		if err := r.stat.save(); err != nil {
			r.progress.printf("[Warning] %v\n", err)
		}
	}()
	if err := r.importCache(ctx); err != nil {
		return Result{}, err
	}
	res, err := r.build(ctx)
	if xerr := r.exportCache(ctx); xerr != nil {
		err = errors.Join(err, xerr)
	}
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// buildRun is the state of one build.
type buildRun struct {
	b         *Builder
	req       Request
	plan      *plan
	context   *source
	tmp       string
	rootless  bool
	progress  *progress
	layerOpts layer.Options
	// hashBatch, for tests, is how many file keys are written at once
	// (0: maxPendingKeys).
	hashBatch int
	meta      *argScope  // ARGs before the first FROM
	target    int        // the stage to build
	stat      *statCache // digests of the context's files
	// remote holds the records --cache-from loaded; fetchFrom says which
	// registry holds each of their layers. Both are only read once the
	// stages start.
	remote    map[digest.Digest]Record
	fetchFrom map[digest.Digest]CacheSource

	// mu guards what the stages, building at once, share (parallel.go).
	mu         sync.Mutex
	futures    []*stageFuture               // by stage index
	waiting    map[int]int                  // stage → the stage it waits for, to catch cycles
	images     map[string]*lazy[*source]    // images COPY --from names
	bases      map[string]*lazy[*baseImage] // images FROM or COPY --from names, resolved (or pulled) once
	usedArgs   map[string]bool              // --build-args some ARG consumed
	gitCommits map[string]gitCommit         // what git sources' refs name (gitadd.go)
	gitAuths   map[string]*gitAuth          // the header each git remote gets (gitauth.go)
	// gitOnce makes the environment ADD runs git in (gitadd.go).
	gitOnce  sync.Once
	gitEnv   []string
	gitErr   error
	gitAgent *sshListener
	touched  []touched // the records this build used or made, for --cache-to
	ran      int       // steps run, not cached
	// noOverlay: an executor refused an overlay root filesystem, so RUN
	// steps take a writable copy (overlayrun.go).
	noOverlay bool
	empty     lazy[*tree] // an empty directory, the view of a stage with no layers
	// bg holds the one layer written in the background at a time
	// (bglayer.go).
	bg chan struct{}
	// noRecords: the step cache held nothing when the build started.
	noRecords bool
	leases    []*unpack.Lease // the unpack cache's entries read until the build ends
}

func (r *buildRun) build(ctx context.Context) (Result, error) {
	var err error
	if r.meta, err = r.metaArgs(); err != nil {
		return Result{}, err
	}
	if r.target, err = r.plan.target(r.req.Target); err != nil {
		return Result{}, err
	}
	expand := r.meta.expander(r.plan.escape)
	order, err := r.plan.needed(r.target, expand)
	if err != nil {
		return Result{}, err
	}
	// Before any stage runs: running expands the instructions in place.
	deps := make([][]int, len(r.plan.stages))
	for _, i := range order {
		deps[i] = r.plan.deps(i, expand)
	}
	if err := r.buildStages(ctx, order, deps); err != nil {
		return Result{}, err
	}
	r.warnUnusedArgs()
	t := r.futures[r.target].res
	return Result{Manifest: t.desc, Config: t.config, Ran: r.ran}, nil
}

// warnUnusedArgs says which --build-args no ARG consumed, as docker does.
func (r *buildRun) warnUnusedArgs() {
	var unused []string
	for k := range r.req.BuildArgs {
		if !r.usedArgs[k] && !proxyArgs[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		r.progress.printf("[Warning] One or more build-args [%s] were not consumed\n", strings.Join(unused, " "))
	}
}

// tempDir makes a new directory under the build's temporary directory.
func (r *buildRun) tempDir(prefix string) (string, error) {
	d, err := os.MkdirTemp(r.tmp, prefix)
	if err != nil {
		return "", fmt.Errorf("make temporary directory: %w", err)
	}
	return d, nil
}

// cacheDir is the host directory of RUN --mount=type=cache id.
func (r *buildRun) cacheDir(id string) (string, error) {
	base := r.b.CacheDir
	if base == "" {
		base = filepath.Join(r.tmp, "cache")
	}
	d := filepath.Join(base, cacheKey(id))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("make cache directory for %q: %w", id, err)
	}
	return d, nil
}

var errNoExecutor = errors.New("this build cannot run RUN instructions: no executor is configured")
