package build

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/manifest"
)

// A RUN on an overlay leaves its changes in an upper directory that
// nothing writes again (the next RUN takes it as a lower layer), so its
// layer is tarred and compressed, on all cores, while the next steps run:
// the next step needs the files, which are there, not the blob. The
// layer, and the step's record, are filled in when it is written; the
// stage waits for it (settle) before anything reads its layers: the
// image, a chain made from them, a writable tree. One layer is written in
// the background at a time in a build, which bounds the memory: a step
// that finishes while one is being written waits for it before handing
// its own over. The first failure cancels the stage, and is the error it
// returns; a failed stage cancels its background writes and waits for
// them. What a layer holds does not depend on when it is written.

// pendingLayer is a layer being written in the background.
type pendingLayer struct {
	layerAt, stepAt int // its index in the stage's layers and steps
	done            chan struct{}
	ld              manifest.LayerDesc
	err             error
}

// queued is a step's record, kept in step order once the layers of the
// steps up to it are written.
type queued struct {
	rec Record
	p   *pendingLayer // the step's own layer, when it is being written
}

// writeLayerLater writes changes of the tree at root (which nothing
// changes any more) as the stage's next layer in the background.
func (s *stageRun) writeLayerLater(ctx context.Context, root string, changes []layer.Change, createdBy string) error {
	if len(changes) == 0 {
		s.steps = append(s.steps, manifest.Step{CreatedBy: createdBy})
		return nil
	}
	select {
	case s.r.bg <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	p := &pendingLayer{layerAt: len(s.layers), stepAt: len(s.steps), done: make(chan struct{})}
	s.layers = append(s.layers, manifest.LayerDesc{})
	s.steps = append(s.steps, manifest.Step{CreatedBy: createdBy})
	s.pending = append(s.pending, p)
	bgCtx, cancel := s.bgCtx, s.cancel
	go func() {
		defer close(p.done)
		defer func() { <-s.r.bg }()
		if h := s.r.b.bgHook; h != nil {
			p.err = h(bgCtx, createdBy)
		}
		if p.err == nil {
			p.ld, p.err = s.r.writeLayer(bgCtx, root, changes)
		}
		if p.err != nil {
			p.err = fmt.Errorf("write the layer of %s: %w", createdBy, p.err)
			cancel(p.err)
		}
	}()
	return nil
}

// pendingStep is the layer the stage's last step is writing, if any.
func (s *stageRun) pendingStep() *pendingLayer {
	if n := len(s.pending); n > 0 && s.pending[n-1].stepAt == len(s.steps)-1 {
		return s.pending[n-1]
	}
	return nil
}

// settle waits for the layers being written and keeps the records that
// waited for them.
func (s *stageRun) settle() error {
	var errs []error
	for _, p := range s.pending {
		<-p.done
		if p.err != nil {
			errs = append(errs, p.err)
			continue
		}
		ld := p.ld
		s.layers[p.layerAt] = ld
		s.steps[p.stepAt].Layer = &ld
	}
	s.pending = nil
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.flush()
}

// flush keeps the queued records whose layers are written, in order.
func (s *stageRun) flush() error {
	for len(s.queue) > 0 {
		q := s.queue[0]
		if q.p != nil {
			select {
			case <-q.p.done:
			default:
				return nil
			}
			if q.p.err != nil {
				return q.p.err
			}
			ld := q.p.ld
			q.rec.Layer = &ld
		}
		s.queue = slices.Delete(s.queue, 0, 1)
		if err := s.keep(q.rec); err != nil {
			return err
		}
	}
	return nil
}

// abandon cancels the layers still being written and waits for them: a
// failed stage leaves nothing running.
func (s *stageRun) abandon() {
	if len(s.pending) == 0 {
		return
	}
	s.cancel(errAbandoned)
	for _, p := range s.pending {
		<-p.done
	}
	s.pending = nil
}

var errAbandoned = errors.New("the stage failed")
