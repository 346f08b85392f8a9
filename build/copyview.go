package build

import (
	"archive/tar"
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/imgtool/imgtool/layer"
	"golang.org/x/sys/unix"
)

// A streamed COPY into a stage that already holds files must write the
// layer the copy through the tree would: the directories above what it
// writes as they are in the stage, the ones it writes into with a new
// mtime (creating or replacing an entry moves a directory's), and what
// it replaces without regard to what was there. It reads the stage from
// a view (fsView), which it never writes.

// fsView is the stage's filesystem as a streamed step reads it: one
// directory (its writable tree, or the unpack cache's entry for its
// layers), or the overlay layers an overlay RUN runs on, read as overlayfs
// shows them.
type fsView struct {
	t     *tree
	stack []string // uppermost first, when t is nil
}

// view is the stage's filesystem to read without writing it.
func (s *stageRun) view(ctx context.Context) (*fsView, error) {
	var t *tree
	var err error
	switch {
	case s.rootfs != nil:
		t = s.rootfs
	case len(s.layers) == 0:
		t, err = s.r.emptyTree()
	case s.r.b.Unpack == nil:
		t, err = s.tree(ctx)
	default:
		var lower []string
		if lower, err = s.lower(ctx); err != nil {
			return nil, err
		}
		if len(lower) > 1 {
			return &fsView{stack: lower}, nil
		}
		t, err = newTree(lower[0])
	}
	if err != nil {
		return nil, err
	}
	return &fsView{t: t}, nil
}

// resolve returns the host path of p (a path inside the stage) to read.
// A tree resolves symlinks inside itself; a stack follows none, and a
// symlink on the way is errNoStream: the step needs the tree.
func (v *fsView) resolve(p string) (string, error) {
	if v.t != nil {
		return v.t.resolve(p)
	}
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return v.stack[0], nil
	}
	for i := 0; i <= len(rel); i++ {
		if i < len(rel) && rel[i] != '/' {
			continue
		}
		_, st, ok := layer.StackLookup(v.stack, rel[:i])
		switch {
		case !ok:
			return "", &fs.PathError{Op: "resolve", Path: "/" + rel, Err: fs.ErrNotExist}
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return "", errNoStream
		}
	}
	host, _, _ := layer.StackLookup(v.stack, rel)
	return host, nil
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

// kind is the file type (unix.S_IFMT bits) of rel in the view, 0 when it
// is not there. Symlinks are not followed, in rel's last component or
// above it: below a symlink, as below a file, nothing of the view is
// reached.
func (v *fsView) kind(rel string) uint32 {
	if rel == "" {
		return unix.S_IFDIR
	}
	if v.t == nil {
		_, st, ok := layer.StackLookup(v.stack, rel)
		if !ok {
			return 0
		}
		return st.Mode & unix.S_IFMT
	}
	root, err := unix.Open(v.t.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
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

// header is rel's tar header as the layer writer gives it.
func (v *fsView) header(rel string, o layer.Options) (*tar.Header, error) {
	if v.t != nil {
		return layer.StatHeader(v.t.root, rel, o)
	}
	host, _, ok := layer.StackLookup(v.stack, rel)
	if !ok {
		return nil, fs.ErrNotExist
	}
	// The entry is rel below the root of the layer that holds it.
	return layer.StatHeader(strings.TrimSuffix(host, "/"+rel), rel, o)
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
		if e.typ == tar.TypeDir && p.view.kind(name) == unix.S_IFDIR {
			continue
		}
		out[parentOf(name)] = true
	}
	return out
}

// viewHeader is the header of directory rel of the view, with the copy's
// time as its mtime when the copy writes into it.
func (p *streamPlan) viewHeader(rel string, modified bool) (*tar.Header, error) {
	h, err := p.view.header(rel, p.opts)
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
