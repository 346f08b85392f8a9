package build

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imgtool/imgtool/manifest"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// stageResult is a built stage: its image (blobs in the store) and its
// root filesystem, which later COPY --from read.
type stageResult struct {
	img    dockerspec.DockerOCIImage
	layers []manifest.LayerDesc
	desc   ocispec.Descriptor // manifest
	config ocispec.Descriptor
	key    digest.Digest // the cache key of its last step
	mu     sync.Mutex    // guards rootfs, which stages reading it may make
	rootfs *tree         // nil until a step that reads it runs
}

// stageRun is the state of a stage while its instructions run.
type stageRun struct {
	r      *buildRun
	idx    int
	label  string
	pos    int // instruction number, FROM being 1
	total  int
	rootfs *tree // nil until a step runs (see tree)
	stack  stack // without rootfs, what an overlay RUN runs on
	img    dockerspec.DockerOCIImage
	layers []manifest.LayerDesc
	steps  []manifest.Step
	times  []time.Time   // when each step first ran, for the history
	key    digest.Digest // the cache key of the state so far
	// noCache: this stage looks nothing up (--no-cache, --no-cache-filter).
	noCache bool
	args    *argScope
	// files counts the context's files this stage's keys looked at and
	// read, for its progress (the stat cache's counts are the whole
	// build's, which other stages add to at the same time).
	files  fileCounts
	cmdSet bool                   // CMD set in this stage, which ENTRYPOINT must not clear
	rest   []instructions.Command // the instructions after the one running
	lex    *shell.Lex
	// pending are the layers being written in the background, queue the
	// records waiting for them (bglayer.go); bgCtx is the stage's context,
	// which cancel cancels.
	pending []*pendingLayer
	queue   []queued
	bgCtx   context.Context
	cancel  context.CancelCauseFunc
	// keyingAfter: the step running is keyed after it runs (keyafter.go).
	keyingAfter bool
}

func stageLabel(s instructions.Stage, i int) string {
	if s.Name != "" {
		return s.Name
	}
	return "stage-" + strconv.Itoa(i)
}

func errCycle(p *plan, i int) error {
	return fmt.Errorf("%s: stage %s depends on itself (through FROM or --from)", p.file, stageLabel(p.stages[i], i))
}

// runStage builds stage i: its base, ONBUILD triggers, then instructions.
func (r *buildRun) runStage(ctx context.Context, i int) (*stageResult, error) {
	st := &r.plan.stages[i]
	s := &stageRun{r: r, idx: i, label: stageLabel(*st, i), pos: 1, args: newArgScope(), lex: shell.NewLex(r.plan.escape)}
	defer s.dropStack()
	ctx, s.cancel = context.WithCancelCause(ctx)
	defer s.cancel(nil)
	defer s.abandon()
	s.bgCtx = ctx
	s.noCache = r.noCache(st, i)
	fromLine := fmt.Sprintf("%s:%d: %s", r.plan.file, rangeLine(st.Location), firstLine(st.SourceCode))
	base, err := r.meta.expander(r.plan.escape)(st.BaseName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fromLine, err)
	}
	if base == "" {
		return nil, fmt.Errorf("%s: the base image name %q is empty; set the ARG it uses with --build-arg or give it a default", fromLine, st.BaseName)
	}
	if err := r.checkPlatform(st.Platform); err != nil {
		return nil, fmt.Errorf("%s: %w", fromLine, err)
	}
	triggers, err := s.from(ctx, base, fromLine)
	if err != nil {
		return nil, err
	}
	cmds := st.Commands
	s.total = 1 + len(triggers) + len(cmds)
	all := append(triggers, cmds...)
	for i, c := range all {
		s.pos++
		s.rest = all[i+1:]
		if err := s.exec(ctx, c); err != nil {
			if cause := context.Cause(ctx); ctx.Err() != nil && cause != nil && !errors.Is(cause, ctx.Err()) {
				err = cause // a layer written in the background failed
			}
			return nil, err
		}
	}
	return s.commit(ctx)
}

// checkPlatform refuses FROM --platform for anything but this machine.
func (r *buildRun) checkPlatform(flag string) error {
	if flag == "" {
		return nil
	}
	v, err := r.meta.expander(r.plan.escape)(flag)
	if err != nil {
		return err
	}
	p, err := manifest.ParsePlatform(v)
	if err != nil {
		return err
	}
	if !manifest.Match(r.req.Platform, p) {
		return fmt.Errorf("--platform=%s: only this machine's platform (%s) can be built; imgtool does not emulate others", v, manifest.FormatPlatform(r.req.Platform))
	}
	return nil
}

func rangeLine(r []parser.Range) int {
	if len(r) == 0 {
		return 0
	}
	return r[0].Start.Line
}

// from sets the stage up on its base (scratch, an earlier stage or an
// image) and returns the base's ONBUILD triggers, parsed. Nothing is
// unpacked yet: the base is known by its key.
func (s *stageRun) from(ctx context.Context, base, fromLine string) ([]instructions.Command, error) {
	r := s.r
	step := r.progress.start(fmt.Sprintf("[%s 1/%d] FROM %s", s.label, 1+len(r.plan.stages[s.idx].Commands), base))
	var err error
	switch j, isStage := r.plan.stageIndex(base, s.idx); {
	case strings.EqualFold(base, "scratch"):
		s.img = scratchImage(r.req.Platform)
		s.key, err = chainKey("", "scratch", manifest.FormatPlatform(r.req.Platform))
	case isStage:
		var prev *stageResult
		if prev, err = r.stage(ctx, s.idx, j); err == nil {
			// Clipped: two stages FROM this one append to their own copies.
			s.img, s.layers = cloneImage(prev.img), slices.Clip(prev.layers)
			s.key, err = chainKey("", "stage", prev.key)
		}
	default:
		var im *baseImage
		if im, err = r.sharedBase(ctx, base, step); err == nil {
			// Other stages FROM the same image share im.
			s.img, s.layers = cloneImage(im.img), slices.Clip(im.layers)
			s.key, err = chainKey("", "image", im.digest)
		}
	}
	if err == nil {
		// How layers are written is part of every key: a gzip build must
		// not take a zstd layer, nor a reproducible one an unclamped one.
		s.key, err = chainKey(s.key, "layers", r.layerFormat())
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", fromLine, err)
		step.done(err)
		return nil, err
	}
	step.done(nil)
	return s.triggers()
}

// triggers parses the base image's ONBUILD instructions, which run first,
// and clears them: they do not pass on to images built on this one.
func (s *stageRun) triggers() ([]instructions.Command, error) {
	var out []instructions.Command
	for _, t := range s.img.Config.OnBuild {
		res, err := parser.Parse(strings.NewReader(t))
		if err != nil {
			return nil, fmt.Errorf("ONBUILD trigger %q of the base image: %w", t, err)
		}
		for _, n := range res.AST.Children {
			c, err := instructions.ParseCommand(n)
			if err != nil {
				return nil, fmt.Errorf("ONBUILD trigger %q of the base image: %w", t, err)
			}
			out = append(out, c)
		}
	}
	s.img.Config.OnBuild = nil
	return out, nil
}

// exec runs one instruction, or takes what it gave from the cache,
// reporting it and its failure with the Dockerfile line it came from.
func (s *stageRun) exec(ctx context.Context, c instructions.Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	where := fmt.Sprintf("%s:%d: %s", s.r.plan.file, cmdLine(c), firstLine(text(c)))
	if err := s.expand(c); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	var step *step
	if changesFiles(c) {
		step = s.r.progress.start(fmt.Sprintf("[%s %d/%d] %s", s.label, s.pos, s.total, firstLine(text(c))))
	}
	cached, err := s.step(ctx, c, step)
	if err != nil {
		err = fmt.Errorf("%s: %w", where, err)
	}
	switch {
	case step == nil:
	case cached && err == nil:
		step.cached()
	default:
		step.done(err)
	}
	return err
}

// changesFiles reports whether c touches the filesystem, and so is shown
// as a step, as docker shows it.
func changesFiles(c instructions.Command) bool {
	switch c.(type) {
	case *instructions.RunCommand, *instructions.CopyCommand, *instructions.AddCommand, *instructions.WorkdirCommand:
		return true
	}
	return false
}

// env is what variables in the stage's instructions expand against: its
// ARGs, then its ENV, which wins.
func (s *stageRun) env() []string {
	return append(s.args.env(), s.img.Config.Env...)
}

// expand expands variables in c's arguments with BuildKit's shell lexer.
func (s *stageRun) expand(c instructions.Command) error {
	env := shell.EnvsFromSlice(s.env())
	if e, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		err := e.Expand(func(w string) (string, error) {
			v, _, err := s.lex.ProcessWord(w, env)
			return v, err
		})
		if err != nil {
			return fmt.Errorf("expand variables: %w", err)
		}
	}
	if e, ok := c.(instructions.SupportsSingleWordExpansionRaw); ok {
		raw := *s.lex
		raw.RawQuotes, raw.RawEscapes = true, true
		err := e.ExpandRaw(func(w string) (string, error) {
			v, _, err := raw.ProcessWord(w, env)
			return v, err
		})
		if err != nil {
			return fmt.Errorf("expand variables: %w", err)
		}
	}
	return nil
}

// dispatch does what c says. The steps that change files make the
// stage's writable tree when they need it.
func (s *stageRun) dispatch(ctx context.Context, c instructions.Command, st *step) error {
	switch c := c.(type) {
	case *instructions.RunCommand:
		return s.run(ctx, c, st)
	case *instructions.CopyCommand:
		return s.copyCmd(ctx, c)
	case *instructions.AddCommand:
		return s.addCmd(ctx, c)
	case *instructions.WorkdirCommand:
		return s.workdir(ctx, c)
	case *instructions.ArgCommand:
		s.r.declare(s.args, c, s.r.meta)
		return nil
	}
	return s.configure(c)
}
