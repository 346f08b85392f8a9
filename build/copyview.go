package build

import (
	"archive/tar"
	"context"
	"fmt"
	"time"

	"github.com/imgtool/imgtool/layer"
	"golang.org/x/sys/unix"
)

// A streamed COPY into a stage that already holds files must write the
// layer the copy through the tree would: the directories above what it
// writes as they are in the stage, the ones it writes into with a new
// mtime (creating or replacing an entry moves a directory's), and what
// it replaces without regard to what was there. It reads the stage from
// a view: the writable tree when there is one, else the unpack cache's
// entry for the stage's layers, which it never writes.

// viewTree is the stage's filesystem to read without writing it.
func (s *stageRun) viewTree(ctx context.Context) (*tree, error) {
	switch {
	case s.rootfs != nil:
		return s.rootfs, nil
	case len(s.layers) == 0:
		return s.r.emptyTree()
	case s.r.b.Unpack == nil:
		return s.tree(ctx)
	}
	if len(s.stack.uppers) > 0 {
		// One directory to resolve paths in: the unpack cache's entry
		// for all the layers.
		s.dropStack()
	}
	lower, err := s.lower(ctx)
	if err != nil {
		return nil, err
	}
	return newTree(lower[0])
}

// emptyTree is an empty directory, the view of a stage with no layers.
func (r *buildRun) emptyTree() (*tree, error) {
	return r.empty.get(func() (*tree, error) {
		dir, err := r.tempDir("empty-")
		if err != nil {
			return nil, err
		}
		return newTree(dir)
	})
}

// viewKind is the file type (unix.S_IFMT bits) of rel in the view, 0 when
// it is not there. Symlinks are not followed, in rel's last component or
// above it: below a symlink, as below a file, nothing of the view is
// reached.
func (p *streamPlan) viewKind(rel string) uint32 {
	if rel == "" {
		return unix.S_IFDIR
	}
	root, err := unix.Open(p.view.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0
	}
	return st.Mode & unix.S_IFMT
}

// modified is the directories that the copy creates or replaces an entry
// in: every one above an entry the view lacks or holds as something the
// entry replaces (all but a directory merged into a directory).
func (p *streamPlan) modified() map[string]bool {
	out := map[string]bool{}
	for name, e := range p.entries {
		if e.fromView {
			continue
		}
		if e.typ == tar.TypeDir && p.viewKind(name) == unix.S_IFDIR {
			continue
		}
		out[parentOf(name)] = true
	}
	return out
}

// viewHeader is the header of directory rel of the view, with the copy's
// time as its mtime when the copy writes into it.
func (p *streamPlan) viewHeader(rel string, modified bool) (*tar.Header, error) {
	h, err := layer.StatHeader(p.view.root, rel, p.opts)
	if err != nil {
		return nil, fmt.Errorf("read /%s of the stage: %w", rel, err)
	}
	if h.Typeflag != tar.TypeDir {
		return nil, fmt.Errorf("/%s of the stage changed while it was copied into", rel)
	}
	if modified {
		h.ModTime = time.Unix(p.now.Unix())
	}
	return h, nil
}
