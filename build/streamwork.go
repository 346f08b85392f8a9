package build

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"golang.org/x/sys/unix"
)

// A WORKDIR in a stage without a writable tree is streamed as a COPY is:
// its layer holds the directories it makes (USER's, 0755) and those above
// them as the stage has them, with a new mtime where it made one in them.
// Making the tree for it would copy the whole stage, which the steps
// after it (a COPY, a RUN on an overlay) no longer need.

// streamWorkdir makes the working directory as a streamed layer. It
// reports false, having written nothing, when the stage has a tree or the
// path goes through a symlink (which the tree's mkdirAll follows) or a
// file.
func (s *stageRun) streamWorkdir(ctx context.Context, c *instructions.WorkdirCommand) (bool, error) {
	if s.rootfs != nil || s.r.b.treeCopy {
		return false, nil
	}
	view, err := s.view(ctx)
	if err != nil {
		return false, err
	}
	if s.rootfs != nil {
		return false, nil // the view is the tree it made: write into it
	}
	o, err := parseOwner(view, s.img.Config.User)
	if errors.Is(err, errNoStream) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("USER %s: %w", s.img.Config.User, err)
	}
	p := &streamPlan{c: &copier{owner: o}, rootless: s.r.rootless, now: unix.NsecToTimespec(time.Now().UnixNano()),
		entries: map[string]*streamEntry{}, view: view, opts: s.r.layerOpts}
	if err := p.mkdirAll(s.img.Config.WorkingDir); errors.Is(err, errNoStream) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	made := false
	for _, e := range p.entries {
		made = made || !e.fromView
	}
	if !made {
		// It was there: no layer, as the tree's mkdirAll writes nothing.
		return true, s.writeStream(ctx, nil, c.String())
	}
	list, err := p.list()
	if err != nil {
		return true, err
	}
	return true, s.writeStream(ctx, list, c.String())
}
