package build

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/unpack"
	"golang.org/x/sys/unix"
)

// A COPY into a stage that has no writable tree (FROM scratch, FROM an
// image, or after steps that came from the cache or ran on an overlay)
// needs no root filesystem: what it writes is exactly its sources, so its
// layer is streamed from them into the layer writer, and nothing is
// written to disk but the blob. Creating and then re-reading thousands of
// files in a temporary tree was most of a copy-heavy build's time. What
// is already in the stage is read from a view of it (copyview.go): the
// unpack cache's entry for its layers, never written. A later step that
// needs the files gets them from the layers: a RUN on an overlay of the
// unpack cache's entry (overlayrun.go), another step by unpacking them
// (lazyfs.go).
//
// The plan (streamPlan) follows the copier (copytree.go) step for step
// over a map of the entries the copy makes; whatever it does not model
// (a symlink or file where a directory must be) makes it give up before
// anything is written, and the copy goes through the tree.

// errNoStream makes a COPY fall back to writing through the tree.
var errNoStream = errors.New("copy needs the root filesystem")

// streamEntry is an entry a streamed COPY makes.
type streamEntry struct {
	typ byte // tar type flag: TypeReg, TypeDir or TypeSymlink
	// fromView: a directory the stage already has, in the layer because
	// the copy writes below it; its header comes from the view.
	fromView bool
	meta     fileMeta
	file     string // regular file: the host file its content comes from
	data     []byte // regular file without a host file: its content
	link     string // symlink target
	id       [2]uint64
	multi    bool         // the source has several hard links: id groups them
	st       *unix.Stat_t // a context file whose digest the copy keys (keyafter.go)
}

// streamPlan is the entries of one streamed COPY by path (relative,
// no leading "/").
type streamPlan struct {
	c        *copier
	rootless bool
	now      unix.Timespec
	entries  map[string]*streamEntry
	view     *fsView // the stage as it is before the copy
	opts     layer.Options
	hash     *fusedHash // digests the context files it writes, when set
}

// streamCopy does op as a streamed layer when the stage has no writable
// tree (view is what it holds). It reports false, having written
// nothing, when the copy needs the tree.
func (s *stageRun) streamCopy(ctx context.Context, c *copier, view *fsView, matches []match, op copyOp, dest string, destDir bool) (bool, error) {
	if op.add != nil || s.rootfs != nil || s.r.b.treeCopy {
		return false, nil
	}
	p := &streamPlan{c: c, rootless: s.r.rootless, now: unix.NsecToTimespec(time.Now().UnixNano()), entries: map[string]*streamEntry{},
		view: view, opts: s.r.layerOpts}
	if s.keyingAfter && op.from == s.r.context {
		p.hash = &fusedHash{stat: s.r.stat, counts: &s.files, src: op.from.t, at: time.Now().UnixNano()}
	}
	err := p.plan(matches, op, dest, destDir)
	if errors.Is(err, errNoStream) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	list, err := p.list()
	if err != nil {
		return true, err
	}
	if s.r.b.streamed != nil {
		s.r.b.streamed.Add(1)
	}
	return true, s.writeStream(ctx, list, op.createdBy)
}

func (p *streamPlan) plan(matches []match, op copyOp, dest string, destDir bool) error {
	for _, m := range matches {
		if err := p.match(m, dest, destDir, op.parents); err != nil {
			return err
		}
	}
	for _, h := range op.contents {
		target := dest
		if destDir {
			target = path.Join(dest, path.Base(path.Clean("/"+h.Path)))
		}
		if err := p.mkdirAll(path.Dir(target)); err != nil {
			return err
		}
		m := fileMeta{mode: 0o644, owner: p.c.owner, mtime: unix.NsecToTimespec(0)}
		if p.c.chmod != nil {
			m.mode = *p.c.chmod
		}
		p.put(target, &streamEntry{typ: tar.TypeReg, meta: m, data: []byte(h.Data)})
	}
	return nil
}

// match plans one source as copier.copyMatch copies it.
func (p *streamPlan) match(m match, dest string, destDir, parents bool) error {
	if m.host != "" || m.extract {
		return errNoStream
	}
	host, err := m.src.t.resolve(m.path)
	if err != nil {
		return m.src.notFound(m.path, err.Error())
	}
	var st unix.Stat_t
	if err := unix.Stat(host, &st); err != nil {
		return fmt.Errorf("stat %s: %w", m.path, err)
	}
	target := dest
	if parents {
		target = path.Join(dest, m.keep)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := p.mkdirAll(target); err != nil {
			return err
		}
		return p.dir(host, m.path, "", target, false)
	}
	if destDir && !parents {
		target = path.Join(dest, path.Base(m.path))
	}
	if err := p.mkdirAll(path.Dir(target)); err != nil {
		return err
	}
	return p.entry(host, m.path, target, &st)
}

// dir plans the entries of source directory srcHost into directory
// target, as copier.copyDir copies them.
func (p *streamPlan) dir(srcHost, srcPath, rel, target string, lazy bool) error {
	return p.c.eachEntry(srcHost, srcPath, rel, func(e *sourceEntry) error {
		childTarget := path.Join(target, e.name)
		if e.isDir {
			return p.subdir(e.host, e.path, e.rel, childTarget, &e.st, e.skip)
		}
		if lazy {
			// The copier makes the excluded directories above a
			// re-included entry with os.MkdirAll: 0755, the builder's.
			if err := p.mkdirAllMeta(target, fileMeta{mode: 0o755, mtime: p.now}); err != nil {
				return err
			}
		}
		return p.entry(e.host, e.path, childTarget, &e.st)
	})
}

func (p *streamPlan) subdir(host, srcPath, rel, target string, st *unix.Stat_t, excluded bool) error {
	if excluded {
		return p.dir(host, srcPath, rel, target, true)
	}
	if e, ok := p.entries[strings.TrimPrefix(target, "/")]; !ok || e.typ != tar.TypeDir {
		p.put(target, &streamEntry{typ: tar.TypeDir})
	}
	if err := p.dir(host, srcPath, rel, target, false); err != nil {
		return err
	}
	p.entries[strings.TrimPrefix(target, "/")].meta = p.c.metaOf(st)
	return nil
}

// entry plans one non-directory source entry as target.
func (p *streamPlan) entry(host, srcPath, target string, st *unix.Stat_t) error {
	m := p.c.metaOf(st)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e := &streamEntry{typ: tar.TypeReg, meta: m, file: host, id: [2]uint64{uint64(st.Dev), st.Ino}, multi: st.Nlink > 1}
		if p.hash != nil {
			cp := *st
			e.st = &cp
		}
		p.put(target, e)
	case unix.S_IFLNK:
		t, err := os.Readlink(host)
		if err != nil {
			return fmt.Errorf("read link %s: %w", srcPath, err)
		}
		if p.rootless {
			m.owner = owner{} // no xattr on a symlink: the caller's, root in the layer
		}
		m.mode = 0o777
		p.put(target, &streamEntry{typ: tar.TypeSymlink, meta: m, link: t})
	case unix.S_IFDIR:
		return p.subdir(host, srcPath, "", target, st, false)
	}
	return nil // sockets, devices and fifos are not copied, as in docker
}

// put makes target e, replacing what was there (and, for a directory
// replaced by something else, what was below it).
func (p *streamPlan) put(target string, e *streamEntry) {
	rel := strings.TrimPrefix(path.Clean("/"+target), "/")
	if old, ok := p.entries[rel]; ok && old.typ == tar.TypeDir && e.typ != tar.TypeDir {
		for k := range p.entries {
			if strings.HasPrefix(k, rel+"/") {
				delete(p.entries, k)
			}
		}
	}
	p.entries[rel] = e
}

// mkdirAll makes directory p and what is missing above it as
// fsWriter.mkdirAll does: 0755, the copy's owner.
func (p *streamPlan) mkdirAll(dir string) error {
	return p.mkdirAllMeta(dir, fileMeta{mode: 0o755, owner: p.c.owner, mtime: p.now})
}

func (p *streamPlan) mkdirAllMeta(dir string, m fileMeta) error {
	rel := strings.TrimPrefix(path.Clean("/"+dir), "/")
	if rel == "" {
		return nil
	}
	for i := 0; i <= len(rel); i++ {
		if i < len(rel) && rel[i] != '/' {
			continue
		}
		e, ok := p.entries[rel[:i]]
		if !ok {
			switch p.view.kind(rel[:i]) {
			case unix.S_IFDIR:
				p.entries[rel[:i]] = &streamEntry{typ: tar.TypeDir, fromView: true}
			case 0:
				p.entries[rel[:i]] = &streamEntry{typ: tar.TypeDir, meta: m}
			default:
				// The copier follows a symlink here, or fails on a file.
				return errNoStream
			}
			continue
		}
		if e.typ != tar.TypeDir {
			// The copier follows a symlink here, or fails on a file.
			return errNoStream
		}
	}
	return nil
}

// list is the plan as layer entries in tar order. Of a group of hard
// links, the first in that order holds the content and the others link
// to it, as layer.Write stores them.
func (p *streamPlan) list() ([]layer.Entry, error) {
	names := make([]string, 0, len(p.entries))
	for k := range p.entries {
		names = append(names, k)
	}
	slices.SortFunc(names, layer.ComparePaths)
	modified := p.modified()
	out := make([]layer.Entry, 0, len(names))
	first := map[[2]uint64]string{}
	for _, name := range names {
		e := p.entries[name]
		if e.fromView {
			h, err := p.viewHeader(name, modified[name])
			if err != nil {
				return nil, err
			}
			out = append(out, layer.Entry{Header: *h})
			continue
		}
		h := tar.Header{Name: name, Typeflag: e.typ, Mode: tarMode(e.meta.mode),
			Uid: e.meta.owner.uid, Gid: e.meta.owner.gid, ModTime: time.Unix(e.meta.mtime.Unix())}
		le := layer.Entry{Header: h, File: e.file, Data: e.data}
		switch e.typ {
		case tar.TypeSymlink:
			le.Header.Linkname = e.link
		case tar.TypeReg:
			if e.multi {
				if f, ok := first[e.id]; ok {
					le.Header.Typeflag, le.Header.Linkname, le.File = tar.TypeLink, f, ""
				} else {
					first[e.id] = name
				}
			}
			if le.File != "" && e.st != nil {
				le.Hashed = p.hash.hashed(e.file, e.st)
			}
		}
		out = append(out, le)
	}
	return out, nil
}

// tarMode is a tar header's mode of fs.FileMode bits chmod takes.
func tarMode(m fs.FileMode) int64 {
	n := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n |= 0o1000
	}
	return n
}

// writeStream writes entries as a layer of the stage.
func (s *stageRun) writeStream(ctx context.Context, entries []layer.Entry, createdBy string) error {
	if len(entries) == 0 {
		s.steps = append(s.steps, manifest.Step{CreatedBy: createdBy})
		return nil
	}
	write := func(tee io.Writer) (manifest.LayerDesc, error) {
		bw, err := s.r.b.Store.Writer(ctx)
		if err != nil {
			return manifest.LayerDesc{}, err
		}
		defer bw.Cancel()
		opts := s.r.layerOpts
		opts.Tee = tee
		ld, err := layer.WriteEntries(ctx, bw, entries, opts)
		if err != nil {
			return ld, err
		}
		ld.Descriptor, err = bw.Commit(ctx, ld.Descriptor)
		return ld, err
	}
	var ld manifest.LayerDesc
	var made *unpack.Lease
	var err error
	if s.r.b.Unpack != nil && s.filesNeededLater() {
		// The layers so far as overlay layers, to stack this one on.
		if _, err := s.lower(ctx); err != nil {
			return err
		}
		ld, made, err = s.unpackWhileWriting(ctx, write)
	} else {
		ld, err = write(nil)
	}
	if err != nil {
		return err
	}
	s.layers = append(s.layers, ld)
	s.steps = append(s.steps, manifest.Step{Layer: &ld, CreatedBy: createdBy})
	if made != nil {
		s.push(made.Dir, made)
	}
	return nil
}
