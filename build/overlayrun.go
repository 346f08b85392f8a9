package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/unpack"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"golang.org/x/sys/unix"
)

// A RUN in a stage that has no writable tree yet runs on an overlay
// instead of a copy: its lower layers are the unpack cache's entry for
// the stage's layers (shared, never written) and the upper directories of
// the overlay RUNs before it, and its changes are read from its own upper
// directory (layer.UpperChanges) rather than from a snapshot diff of the
// whole tree. Nothing of the base is copied, and nothing is walked but
// what the step changed. Where the kernel refuses overlayfs in a user
// namespace, or the step needs the tree itself (a --mount, whose mount
// point the build makes in it), the RUN takes the writable tree as
// before (run.go).

// stack is a stage's filesystem while it has no writable tree: base, the
// unpack cache's entry for the stage's first layers, under uppers, one
// overlay layer for each layer after them: the upper directory of an
// overlay RUN, or the unpack cache's entry for a streamed COPY's layer
// alone (which holds no whiteout), held in held.
type stack struct {
	base   *unpack.Lease
	nBase  int      // the layers base holds
	uppers []string // uppermost first
	held   []*unpack.Lease
}

// push stacks dir, the overlay layer of the stage's last layer; l, when
// set, is its lease.
func (s *stageRun) push(dir string, l *unpack.Lease) {
	s.stack.uppers = append([]string{dir}, s.stack.uppers...)
	if l != nil {
		s.stack.held = append(s.stack.held, l)
	}
}

// maxUppers bounds the upper directories stacked over the unpack cache's
// entry: overlayfs takes its options in one page, and a long stack makes
// every lookup that misses go through each layer.
const maxUppers = 16

// lower returns the stage's filesystem as overlay layers, uppermost
// first. When a layer came otherwise than from an overlay RUN (a cached
// step, a streamed COPY), or the stack is deep, it starts again from the
// unpack cache's entry for all the stage's layers.
func (s *stageRun) lower(ctx context.Context) ([]string, error) {
	st := &s.stack
	if st.base == nil || st.nBase+len(st.uppers) != len(s.layers) || len(st.uppers) >= maxUppers {
		if err := s.settle(); err != nil {
			return nil, err
		}
		s.dropStack()
		if err := s.r.ensureBlobs(ctx, s.layers); err != nil {
			return nil, err
		}
		l, err := s.r.b.Unpack.Rootfs(ctx, s.r.b.Store, s.layers)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", s.label, err)
		}
		st.base, st.nBase = l, len(s.layers)
	}
	return append(append([]string(nil), st.uppers...), st.base.Dir), nil
}

// dropStack lets the unpack cache's entry go. The upper directories stay
// in the build's temporary directory until it ends.
func (s *stageRun) dropStack() {
	if s.stack.base != nil {
		s.stack.base.Release()
	}
	for _, l := range s.stack.held {
		l.Release()
	}
	s.stack = stack{}
}

// overlayRun runs c on an overlay and writes its layer. It reports false,
// having changed nothing, when c must run on the writable tree instead.
func (s *stageRun) overlayRun(ctx context.Context, c *instructions.RunCommand, st *step) (bool, error) {
	if s.rootfs != nil || s.r.b.Unpack == nil || s.r.overlayRefused() || needsTree(c) {
		return false, nil
	}
	lower, err := s.lower(ctx)
	if err != nil {
		return true, err
	}
	if !s.workdirReady(lower) {
		return false, nil
	}
	upper, err := s.r.tempDir("upper-")
	if err != nil {
		return true, err
	}
	if err := sameRoot(upper, lower[0]); err != nil {
		return true, err
	}
	work, err := s.r.tempDir("work-")
	if err != nil {
		return true, err
	}
	spec := RunSpec{Lower: lower, Upper: upper, Work: work, Env: s.runEnv(), User: s.img.Config.User,
		Dir: s.img.Config.WorkingDir, Stdin: strings.NewReader("")}
	if spec.Dir == "" {
		spec.Dir = "/"
	}
	if spec.Args, err = s.runArgs(c, nil); err != nil {
		return true, err
	}
	if spec.Network = instructions.GetNetwork(c); spec.Network == instructions.NetworkDefault {
		spec.Network = ""
	}
	if err := s.execute(ctx, spec, st); err != nil {
		if errors.Is(err, ErrNoOverlay) {
			s.r.refuseOverlay(err)
			return false, errors.Join(removeAll(upper), removeAll(work))
		}
		return true, err
	}
	changes, err := layer.UpperChanges(upper, lower)
	if err != nil {
		return true, err
	}
	list, err := collect(changes)
	if err != nil {
		return true, fmt.Errorf("read the changes of the step: %w", err)
	}
	if err := s.writeLayerLater(ctx, upper, list, c.String()); err != nil {
		return true, err
	}
	s.push(upper, nil)
	return true, nil
}

// sameRoot gives upper the mode and owner of the root directory of the
// layers below it: overlayfs shows the upper directory's, and a fresh
// temporary directory's 0700 would lock every USER but root out.
func sameRoot(upper, below string) error {
	var st unix.Stat_t
	if err := unix.Stat(below, &st); err != nil {
		return fmt.Errorf("stat the root directory: %w", err)
	}
	if err := unix.Chmod(upper, st.Mode&0o7777); err != nil {
		return fmt.Errorf("set the upper layer's root mode: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Lchown(upper, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("set the upper layer's root owner: %w", err)
		}
	}
	return nil
}

// needsTree reports whether c needs the stage's writable tree: a --mount
// (its mount point is made in the tree) or a heredoc run as a script
// (mounted into it).
func needsTree(c *instructions.RunCommand) bool {
	if len(instructions.GetMounts(c)) > 0 {
		return true
	}
	if len(c.Files) > 0 && len(c.CmdLine) == 1 && parser.MustParseHeredoc(c.CmdLine[0]) != nil {
		return strings.HasPrefix(c.Files[0].Data, "#!")
	}
	return false
}

// workdirReady reports whether the executor may make the working
// directory itself: it makes a missing one root's, as the writable
// tree's RUN does for a stage without USER; for another USER the
// directory must be there already.
func (s *stageRun) workdirReady(lower []string) bool {
	if s.img.Config.User == "" || s.img.Config.WorkingDir == "" {
		return true
	}
	v := &fsView{stack: lower}
	if len(lower) == 1 {
		v = &fsView{t: &tree{root: lower[0]}}
	}
	host, err := v.resolve(s.img.Config.WorkingDir)
	if err != nil {
		return false
	}
	fi, err := os.Stat(host)
	return err == nil && fi.IsDir()
}

// overlayRefused reports whether an executor refused an overlay in this
// build already: the kernel does not change its mind.
func (r *buildRun) overlayRefused() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.noOverlay
}

func (r *buildRun) refuseOverlay(err error) {
	r.mu.Lock()
	first := !r.noOverlay
	r.noOverlay = true
	r.mu.Unlock()
	if first {
		r.progress.printf("[Warning] RUN steps diff a copy of the root filesystem instead: %v\n", err)
	}
}
