package build

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Stages that do not need each other build at once, as BuildKit's do:
// each needed stage has a goroutine that waits for the stages it names
// (FROM, COPY --from, RUN --mount from=) and then takes one of Jobs
// slots. A stage is built once, by whoever asks first (its goroutine or
// a stage that needs it and got there first); the others wait for it.
// The first error cancels the rest and is the one returned. The image
// does not depend on the schedule: each stage's layers, config and keys
// come from its own steps and from the stages it names, never from what
// else ran meanwhile.

// stageFuture is one stage's build: done closes when res or err is set.
type stageFuture struct {
	claimed bool // someone builds it (under buildRun.mu)
	done    chan struct{}
	res     *stageResult
	err     error
}

// jobs is how many stages build at once: Builder.Jobs, else one a core
// but at least two, since a stage mostly waits on its RUN processes and
// the disk rather than on the CPU.
func (b *Builder) jobs() int {
	if b.Jobs > 0 {
		return b.Jobs
	}
	return max(2, runtime.GOMAXPROCS(0))
}

// buildStages builds the stages of order (each after the stages deps says
// it needs) with at most jobs at once.
func (r *buildRun) buildStages(ctx context.Context, order []int, deps [][]int) error {
	r.futures = make([]*stageFuture, len(r.plan.stages))
	for i := range r.futures {
		r.futures[i] = &stageFuture{done: make(chan struct{})}
	}
	r.waiting = map[int]int{}
	g, ctx := errgroup.WithContext(ctx)
	slots := make(chan struct{}, r.b.jobs())
	for _, i := range order {
		g.Go(func() error {
			for _, d := range deps[i] {
				f := r.futures[d]
				select {
				case <-f.done:
					if f.err != nil {
						return f.err
					}
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			defer func() { <-slots }()
			_, err := r.stage(ctx, -1, i)
			return err
		})
	}
	return g.Wait()
}

// stage returns stage i, building it unless it is built or being built,
// in which case it waits for it. from is the stage that asks (-1: none);
// a stage that would wait, directly or through others, for itself is an
// error, where waiting would never end.
func (r *buildRun) stage(ctx context.Context, from, i int) (*stageResult, error) {
	f := r.futures[i]
	r.mu.Lock()
	if from >= 0 {
		if r.reaches(i, from) {
			r.mu.Unlock()
			return nil, fmt.Errorf("%s: stage %s depends on itself", r.plan.file, stageLabel(r.plan.stages[i], i))
		}
		r.waiting[from] = i
		defer func() {
			r.mu.Lock()
			delete(r.waiting, from)
			r.mu.Unlock()
		}()
	}
	owner := !f.claimed
	f.claimed = true
	r.mu.Unlock()
	if owner {
		f.res, f.err = r.runStage(ctx, i)
		close(f.done)
		return f.res, f.err
	}
	select {
	case <-f.done:
		return f.res, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// reaches reports whether stage i is, or waits (through the stages it
// waits for) for, stage j. A stage waits for one other at a time, so
// r.waiting is a chain from each stage; it is bounded by the number of
// stages in case of a cycle not closed yet. r.mu is held.
func (r *buildRun) reaches(i, j int) bool {
	for range len(r.plan.stages) + 1 {
		if i == j {
			return true
		}
		next, ok := r.waiting[i]
		if !ok {
			return false
		}
		i = next
	}
	return true
}

// lazy is a value made once, by the first that asks, which the others
// wait for.
type lazy[T any] struct {
	once sync.Once
	v    T
	err  error
}

func (l *lazy[T]) get(fn func() (T, error)) (T, error) {
	l.once.Do(func() { l.v, l.err = fn() })
	return l.v, l.err
}
