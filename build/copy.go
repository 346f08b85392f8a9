package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"
)

// copyOp is one COPY or ADD.
type copyOp struct {
	srcs      []string
	contents  []instructions.SourceContent // heredocs: COPY <<EOF /dest
	dest      string
	from      *source
	chown     string
	chmod     string
	excludes  []string
	parents   bool
	createdBy string
	// add, for ADD, downloads URL sources and marks local archives for
	// extraction (nil: COPY).
	add *addOp
}

func (s *stageRun) copyCmd(ctx context.Context, c *instructions.CopyCommand) error {
	from := s.r.context
	if c.From != "" {
		var err error
		if from, err = s.r.fromSource(ctx, c.From, s.idx); err != nil {
			return err
		}
	}
	return s.copy(ctx, copyOp{
		srcs: c.SourcePaths, contents: c.SourceContents, dest: c.DestPath, from: from,
		chown: c.Chown, chmod: c.Chmod, excludes: c.ExcludePatterns, parents: c.Parents,
		createdBy: c.String(),
	})
}

// fromSource is the tree COPY --from (or RUN --mount from=) names: an
// earlier (or any other) stage, built if need be, or an image. Either is
// known by its cache key, and unpacked only when a step that reads it
// runs.
func (r *buildRun) fromSource(ctx context.Context, name string, self int) (*source, error) {
	if j, ok := r.plan.stageIndex(name, len(r.plan.stages)); ok {
		if j == self {
			return nil, fmt.Errorf("--from=%s names the stage it is in", name)
		}
		st, err := r.stage(ctx, self, j)
		if err != nil {
			return nil, err
		}
		return &source{what: "stage " + name, key: st.key, load: func(ctx context.Context) (*tree, error) {
			return r.stageTree(ctx, st)
		}}, nil
	}
	// Stages that name one image share its source, made once.
	r.mu.Lock()
	l := r.images[name]
	if l == nil {
		l = &lazy[*source]{}
		r.images[name] = l
	}
	r.mu.Unlock()
	return l.get(func() (*source, error) { return r.imageSource(ctx, name) })
}

// imageSource is the source of the image name, unpacked when first read.
func (r *buildRun) imageSource(ctx context.Context, name string) (*source, error) {
	step := r.progress.start("[internal] load image " + name)
	im, err := r.sharedBase(ctx, name, step)
	if err != nil {
		err = fmt.Errorf("--from=%s is neither a stage of %s nor an image: %w", name, r.plan.file, err)
		step.done(err)
		return nil, err
	}
	step.done(nil)
	key, err := chainKey("", "image", im.digest)
	if err != nil {
		return nil, err
	}
	return &source{what: "image " + name, key: key, load: func(ctx context.Context) (*tree, error) {
		return r.readTree(ctx, "from-", im.layers)
	}}, nil
}

// copy does a COPY or ADD: streamed into its layer (copystream.go), or
// into the stage's tree with a layer made of exactly the paths it wrote.
func (s *stageRun) copy(ctx context.Context, op copyOp) error {
	if len(op.srcs) == 0 && len(op.contents) == 0 {
		return errors.New("no source to copy")
	}
	dest := op.dest
	if !path.IsAbs(dest) {
		dest = path.Join("/", s.img.Config.WorkingDir, dest)
	}
	// A destination ending in / (or . / ..) is a directory, as docker says.
	destDir := strings.HasSuffix(op.dest, "/") || path.Base(op.dest) == "." || path.Base(op.dest) == ".."
	view, err := s.view(ctx)
	if err != nil {
		return err
	}
	// What the view cannot resolve without following a symlink, the
	// tree can: the copy then goes through it.
	toTree := func() error {
		t, err := s.tree(ctx)
		view = &fsView{t: t}
		return err
	}
	o, err := parseOwner(view, op.chown)
	if errors.Is(err, errNoStream) {
		if err = toTree(); err == nil {
			o, err = parseOwner(view, op.chown)
		}
	}
	if err != nil {
		return fmt.Errorf("--chown=%s: %w", op.chown, err)
	}
	chmod, err := parseChmod(op.chmod)
	if err != nil {
		return err
	}
	excl, err := newExcludes(op.excludes)
	if err != nil {
		return err
	}
	if err := op.from.open(ctx); err != nil {
		return err
	}
	c := &copier{from: op.from, owner: o, chmod: chmod, excludes: excl, ctx: ctx}
	var matches []match
	for _, src := range op.srcs {
		ms, err := s.sources(ctx, op, src)
		if err != nil {
			return err
		}
		matches = append(matches, ms...)
	}
	if len(matches)+len(op.contents) > 1 && !destDir {
		return fmt.Errorf("with more than one source, the destination %q must be a directory and end with a /", op.dest)
	}
	if !destDir {
		// An existing directory takes the sources inside, as in docker.
		host, err := view.resolve(dest)
		if errors.Is(err, errNoStream) {
			if err := toTree(); err != nil {
				return err
			}
			host, err = view.resolve(dest)
		}
		if err == nil {
			if fi, err := os.Stat(host); err == nil && fi.IsDir() {
				destDir = true
			}
		}
	}
	if ok, err := s.streamCopy(ctx, c, view, matches, op, dest, destDir); ok || err != nil {
		return err
	}
	t, err := s.tree(ctx)
	if err != nil {
		return err
	}
	c.w = newFSWriter(t, s.r.rootless)
	defer c.w.restoreModes() // on failure; addLayer restores them on success
	for _, m := range matches {
		if m.src != nil {
			c.from = m.src // a git checkout has no .dockerignore
		}
		if err := c.copyMatch(m, dest, destDir, op.parents); err != nil {
			return err
		}
	}
	for _, h := range op.contents {
		target := dest
		if destDir {
			// A heredoc's name is one file name, whatever it says.
			target = path.Join(dest, path.Base(path.Clean("/"+h.Path)))
		}
		if err := c.writeContent(target, h.Data); err != nil {
			return err
		}
	}
	return s.addLayer(ctx, c.w, op.createdBy)
}

// match is one source path to copy: a path in a tree, with the part of
// it that --parents keeps.
type match struct {
	src  *source
	path string // inside src's tree
	keep string // what --parents recreates under the destination
	// host, when set, is a file ADD prepared (a download) to be written
	// at name; it is not in any tree.
	host, name string
	// extract asks ADD to unpack the file as a tar archive.
	extract bool
}

// sources expands one source argument of a COPY (or a local ADD).
func (s *stageRun) sources(ctx context.Context, op copyOp, src string) ([]match, error) {
	if op.add != nil {
		if ms, ok, err := op.add.fetch(ctx, s, src); ok || err != nil {
			return ms, err
		}
	}
	paths, err := op.from.match(src)
	if err != nil {
		return nil, err
	}
	// --parents keeps the path below the last "/./" of the source, or
	// below the root.
	pivot := "/"
	if i := strings.LastIndex("/"+src, "/./"); i >= 0 {
		pivot = path.Clean("/" + src[:max(i-1, 0)])
	}
	out := make([]match, 0, len(paths))
	for _, p := range paths {
		keep := strings.TrimPrefix(strings.TrimPrefix(p, pivot), "/")
		m := match{src: op.from, path: p, keep: keep}
		if op.add != nil {
			m.extract = op.add.isArchive(op.from, p)
		}
		out = append(out, m)
	}
	return out, nil
}

// parseChmod parses --chmod: octal permissions, with setuid, setgid and
// sticky bits.
func parseChmod(s string) (*fs.FileMode, error) {
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return nil, fmt.Errorf("--chmod=%s: want octal permissions such as 0755", s)
	}
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return &m, nil
}

func newExcludes(patterns []string) (*patternmatcher.PatternMatcher, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("--exclude: %w", err)
	}
	return pm, nil
}

// metaOf is what a copy keeps of a source entry: mode bits and mtime;
// the owner is the copy's.
func (c *copier) metaOf(st *unix.Stat_t) fileMeta {
	m := fileMeta{mode: modeOf(st), mtime: st.Mtim, owner: c.owner}
	if c.chmod != nil {
		m.mode = *c.chmod
	}
	return m
}
