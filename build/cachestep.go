package build

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/manifest"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/opencontainers/go-digest"
)

// step does one instruction. Its effect on the config is always applied
// (it is cheap and reads no file); for an instruction that changes files,
// the layer recorded under its key is reused when there is one, else the
// instruction runs and its result is recorded. It reports whether the
// cache answered.
func (s *stageRun) step(ctx context.Context, c instructions.Command, st *step) (bool, error) {
	switch c := c.(type) {
	case *instructions.ArgCommand:
		return false, s.arg(c)
	case *instructions.WorkdirCommand:
		if err := s.setWorkdir(c); err != nil {
			return false, err
		}
	}
	if !changesFiles(c) {
		return s.configStep(c)
	}
	if s.keyAfter(c) {
		return false, s.runKeyedAfter(ctx, c, st)
	}
	key, cacheable, err := s.loggedKey(ctx, c, st)
	if err != nil {
		return false, err
	}
	if cacheable {
		if rec, ok := s.lookup(ctx, key); ok {
			return true, s.reuse(ctx, rec)
		}
	}
	start := time.Now().UTC()
	s.r.mu.Lock()
	s.r.ran++
	s.r.mu.Unlock()
	if err := s.dispatch(ctx, c, st); err != nil {
		return false, err
	}
	last := s.steps[len(s.steps)-1]
	if !cacheable {
		// Known only now: later steps chain on what this one gave.
		var diffID digest.Digest
		if last.Layer != nil {
			diffID = last.Layer.DiffID
		}
		if key, err = chainKey(s.key, "result", text(c), diffID); err != nil {
			return false, err
		}
	}
	return false, s.record(Record{Key: key, Layer: last.Layer, Created: start, CreatedBy: last.CreatedBy})
}

// loggedKey is fileStepKey, saying under step st how many context files
// it looked at and read.
func (s *stageRun) loggedKey(ctx context.Context, c instructions.Command, st *step) (digest.Digest, bool, error) {
	return s.loggedKeySince(ctx, c, st, s.filesNow())
}

// loggedKeySince is loggedKey counting the files read since the counts
// were since (by the step itself, when it is keyed after it ran).
func (s *stageRun) loggedKeySince(ctx context.Context, c instructions.Command, st *step, since [3]int64) (digest.Digest, bool, error) {
	key, cacheable, err := s.fileStepKey(ctx, c)
	if err != nil {
		return "", false, err
	}
	if now := s.filesNow(); now[0] > since[0] && st != nil {
		// What a no-change rebuild should show: nothing read.
		st.logf("context: %d files checked, %d read (%s)", now[0]-since[0], now[1]-since[1], humanBytes(now[2]-since[2]))
	}
	return key, cacheable, nil
}

// filesNow is the stage's file counts: checked, read, bytes read.
func (s *stageRun) filesNow() [3]int64 {
	c, h, r := s.files.get()
	return [3]int64{c, h, r}
}

// arg declares a stage ARG. Its key holds the names only: the values
// reach the key of each step that uses them (expanded into the
// instruction, or in a RUN's environment), so that a value nothing uses
// busts nothing.
func (s *stageRun) arg(c *instructions.ArgCommand) error {
	s.r.declare(s.args, c, s.r.meta)
	names := make([]string, len(c.Args))
	for i, a := range c.Args {
		names[i] = a.Key
	}
	var err error
	s.key, err = chainKey(s.key, "ARG", names)
	return err
}

// configStep applies an instruction that changes only the config. Its
// record keeps the time it was first applied, which the history shows.
func (s *stageRun) configStep(c instructions.Command) (bool, error) {
	if err := s.configure(c); err != nil {
		return false, err
	}
	key, err := chainKey(s.key, c.Name(), c, s.img.Config, s.img.Author)
	if err != nil {
		return false, err
	}
	rec, hit := s.lookup(context.Background(), key)
	if !hit {
		rec = Record{Key: key, Created: time.Now().UTC(), CreatedBy: text(c)}
	}
	if err := s.record(rec); err != nil {
		return false, err
	}
	return hit, nil
}

// fileStepKey is the key of an instruction that changes files, and
// whether it can be known before the instruction runs.
func (s *stageRun) fileStepKey(ctx context.Context, c instructions.Command) (digest.Digest, bool, error) {
	switch c := c.(type) {
	case *instructions.RunCommand:
		k, err := s.runKey(ctx, c)
		return k, true, err
	case *instructions.CopyCommand:
		from := s.r.context
		if c.From != "" {
			var err error
			if from, err = s.r.fromSource(ctx, c.From, s.idx); err != nil {
				return "", false, err
			}
		}
		return s.copyKey(ctx, c, from, c.SourcePaths, c.ExcludePatterns, "")
	case *instructions.AddCommand:
		return s.copyKey(ctx, c, s.r.context, c.SourcePaths, c.ExcludePatterns, c.Checksum)
	case *instructions.WorkdirCommand:
		k, err := chainKey(s.key, "WORKDIR", s.img.Config.WorkingDir, s.img.Config.User)
		return k, true, err
	}
	return "", false, fmt.Errorf("%s has no cache key", c.Name())
}

// lookup finds the record of key: in the local cache, or in what
// --cache-from loaded, as long as its layer is in the store or can be
// fetched.
func (s *stageRun) lookup(ctx context.Context, key digest.Digest) (Record, bool) {
	r := s.r
	if s.noCache {
		return Record{}, false
	}
	if r.b.Cache != nil {
		if rec, ok, err := r.b.Cache.Get(key); err == nil && ok && r.available(ctx, rec.Layer) {
			return rec, true
		}
	}
	if rec, ok := r.remote[key]; ok && r.available(ctx, rec.Layer) {
		return rec, true
	}
	return Record{}, false
}

// available reports whether layer l (nil: none) is in the store or can
// be fetched from a --cache-from registry.
func (r *buildRun) available(ctx context.Context, l *manifest.LayerDesc) bool {
	if l == nil {
		return true
	}
	if _, ok := r.fetchFrom[l.Digest]; ok {
		return true
	}
	_, err := r.b.Store.Stat(ctx, l.Digest)
	return err == nil
}

// reuse takes a file step's result from its record. When the stage's
// tree is already there (a step before ran), the layer is applied to it,
// so that it stays what the steps so far make.
func (s *stageRun) reuse(ctx context.Context, rec Record) error {
	if rec.Layer != nil {
		if s.rootfs != nil {
			if err := s.r.applyLayer(ctx, *rec.Layer, s.rootfs.root); err != nil {
				return err
			}
		}
		s.layers = append(s.layers, *rec.Layer)
	}
	s.steps = append(s.steps, manifest.Step{Layer: rec.Layer, CreatedBy: rec.CreatedBy})
	return s.record(rec)
}

// record makes rec the stage's state and keeps it: in the local cache,
// and for --cache-to, once the layers of the steps up to it are written
// (bglayer.go).
func (s *stageRun) record(rec Record) error {
	s.times = append(s.times, rec.Created)
	s.key = rec.Key
	s.queue = append(s.queue, queued{rec: rec, p: s.pendingStep()})
	return s.flush()
}

// keep keeps rec in the local cache and for --cache-to.
func (s *stageRun) keep(rec Record) error {
	s.r.mu.Lock()
	s.r.touched = append(s.r.touched, touched{Record: rec, stage: s.idx})
	s.r.mu.Unlock()
	if s.r.b.Cache == nil {
		return nil
	}
	return s.r.b.Cache.Put(rec)
}

// touched is a record this build used or made, for --cache-to.
type touched struct {
	Record
	stage int
}

// noCache reports whether stage i looks nothing up: --no-cache, or
// --no-cache-filter naming it (by name or number).
func (r *buildRun) noCache(st *instructions.Stage, i int) bool {
	if r.req.NoCache {
		return true
	}
	for _, f := range r.req.NoCacheFilter {
		if f != "" && (strings.EqualFold(f, st.Name) || f == strconv.Itoa(i)) {
			return true
		}
	}
	return false
}

// layerFormat is what of the layer options shows in a layer's bytes.
func (r *buildRun) layerFormat() any {
	var epoch *int64
	if e := r.layerOpts.SourceDateEpoch; e != nil {
		n := e.Unix()
		epoch = &n
	}
	c := r.layerOpts.Compression
	if c == "" {
		c = layer.Zstd
	}
	return struct {
		Compression string `json:"compression"`
		Level       int    `json:"level,omitempty"`
		Epoch       *int64 `json:"epoch,omitempty"`
	}{string(c), r.layerOpts.Level, epoch}
}

// humanBytes formats a byte count as docker's progress does.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2fGB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2fMB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.2fkB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
