package unpack

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/imgtool/imgtool/internal/compression"
	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Apply applies one layer blob (gzip, zstd or uncompressed, told by its
// magic bytes) onto root. It checks the blob against d.Digest and d.Size,
// and the tar against diffID; an empty digest skips that check. A blob
// that checks its own digest (a store.Verifying reader of d.Digest, as
// the store's Open returns) is not hashed again. On error,
// root may hold part of the layer (callers unpack into a staging
// directory), but nothing outside root is ever touched.
//
// Apply never writes into, chmods, chowns, sets xattrs or times on a file
// it did not make for this layer: a replaced file is unlinked and made
// anew, a hard link entry takes no metadata, and only directories are
// changed in place. So root's files may be hard links to another tree's
// (Cache builds a chain on a hard-linked clone of its parent) and that
// tree stays as it was.
func Apply(ctx context.Context, root string, blob io.Reader, d ocispec.Descriptor, diffID digest.Digest, o Options) (Report, error) {
	return apply(ctx, root, blob, d, diffID, o, "")
}

// apply is Apply, taking the files that sibling (a tree, "" for none)
// holds the same as hard links (reuse.go).
func apply(ctx context.Context, root string, blob io.Reader, d ocispec.Descriptor, diffID digest.Digest, o Options, sibling string) (Report, error) {
	o.Limits = o.Limits.withDefaults()
	if os.Geteuid() != 0 {
		o.Rootless = true
	}
	bc, err := newBlobCheck(blob, d)
	if err != nil {
		return Report{}, fmt.Errorf("unpack layer %s: %w", d.Digest, err)
	}
	dec, _, err := compression.Decompress(bc.src)
	if err != nil {
		return Report{}, fmt.Errorf("unpack layer %s: %w", d.Digest, err)
	}
	var tarSrc io.Reader = dec
	var diffV digest.Verifier
	if diffID != "" {
		if err := diffID.Validate(); err != nil {
			return Report{}, fmt.Errorf("unpack layer %s: diffID: %w", d.Digest, err)
		}
		diffV = diffID.Verifier()
		tarSrc = io.TeeReader(dec, diffV)
	}
	a, err := newApplier(root, o)
	if err != nil {
		return Report{}, fmt.Errorf("unpack layer %s: %w", d.Digest, err)
	}
	defer a.close()
	if sibling != "" {
		if a.sibling, err = unix.Open(sibling, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			a.sibling = -1 // only a chance to save work lost
		}
	}
	ra := newReadAhead(tarSrc)
	err = a.apply(ctx, tar.NewReader(ra))
	if werr := a.stopWriters(); err == nil {
		err = werr
	}
	if err == nil {
		err = drainTrailing(ra)
	}
	// Stop the read-ahead and the decompressor (pgzip reads ahead on its
	// own goroutine too) before reading the rest of the blob here.
	ra.Close()
	dec.Close()
	if err == nil {
		err = bc.finish()
	}
	if err == nil && diffV != nil && !diffV.Verified() {
		err = fmt.Errorf("%w: uncompressed layer does not match its diffID", store.ErrMismatch)
	}
	if err != nil {
		return a.report(), fmt.Errorf("unpack layer %s: %w", d.Digest, bc.corrupt(err))
	}
	return a.report(), nil
}

func (l Limits) withDefaults() Limits {
	def := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = def.MaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = def.MaxEntries
	}
	if l.MaxPathLen <= 0 {
		l.MaxPathLen = def.MaxPathLen
	}
	return l
}

// applier applies tar entries to the directory it holds open.
type applier struct {
	root    int
	sibling int // a tree whose same files are linked (reuse.go), or -1
	o       Options
	walk    bool // resolve by walkInRoot: the kernel lacks openat2
	rep     Report
	created map[string]bool // paths this layer made: whiteouts spare them
	dirs    []dirMeta       // modes and times applied once children exist
	opened  []dirMeta       // read-only directories opened up to write in (rootless)
	cache   struct {
		dir   string
		fd    int
		stale bool
		// writable: writable found fd writable (or opened it up).
		writable bool
		// gid is the directory's group once fstat'ed, -1 before.
		gid int
	}
	euid, egid int
	buf        []byte   // content of a large file on its way to the file
	w          *writers // finish regular files; nil until the first
	stopped    bool     // w is stopped
	notes      []seqWarning
}

type dirMeta struct {
	rel string
	h   *tar.Header
}

func newApplier(root string, o Options) (*applier, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", root, err)
	}
	a := &applier{root: fd, sibling: -1, o: o, created: map[string]bool{}, walk: forceWalk.Load(), euid: os.Geteuid(), egid: os.Getegid()}
	a.cache.fd, a.cache.gid = -1, -1
	return a, nil
}

func (a *applier) close() {
	a.stopWriters()
	a.dropCache()
	unix.Close(a.root)
	if a.sibling >= 0 {
		unix.Close(a.sibling)
	}
}

// stopWriters waits until the files queued are finished (or, after an
// error, closed) and returns the first error of one. It is idempotent.
func (a *applier) stopWriters() error {
	if a.w == nil || a.stopped {
		return nil
	}
	a.stopped = true
	return a.w.stop()
}

// report is what Apply did, once the writers are stopped.
func (a *applier) report() Report {
	r := a.rep
	var theirs []seqWarning
	if a.w != nil {
		theirs = a.w.notes
	}
	r.Warnings = sortWarnings(a.notes, theirs)
	return r
}

func (a *applier) warn(rel, format string, args ...any) {
	a.warnAll(rel, notes{fmt.Sprintf(format, args...)})
}

// warnAll records what was skipped for the entry being applied.
func (a *applier) warnAll(rel string, n notes) {
	for _, r := range n {
		a.notes = append(a.notes, seqWarning{a.rep.Entries, Warning{Path: "/" + rel, Reason: r}})
	}
}

// clean maps a tar name to a path relative to root: "..", "." and
// leading slashes cannot climb above "/".
func clean(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func (a *applier) apply(ctx context.Context, tr *tar.Reader) error {
	for {
		if a.w != nil {
			if err := a.w.failed(); err != nil {
				return err
			}
		}
		h, err := tr.Next()
		if err == io.EOF {
			if a.w != nil {
				a.w.flush()
			}
			if err := a.stopWriters(); err != nil {
				return err
			}
			return a.finishDirs()
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		a.rep.Entries++
		if a.rep.Entries > a.o.Limits.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrLimit, a.o.Limits.MaxEntries)
		}
		if len(h.Name) > a.o.Limits.MaxPathLen || len(h.Linkname) > a.o.Limits.MaxPathLen {
			return fmt.Errorf("%w: a name or link target is longer than %d bytes", ErrLimit, a.o.Limits.MaxPathLen)
		}
		if err := a.entry(h, tr); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
}

func (a *applier) entry(h *tar.Header, r io.Reader) error {
	rel := clean(h.Name)
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if strings.HasPrefix(base, ".wh.") {
		return a.whiteout(dir, base)
	}
	if rel == "" {
		return nil // the root itself: its metadata belongs to whoever made it
	}
	switch h.Typeflag {
	case tar.TypeGNUSparse: // archive/tar already turns TypeRegA into TypeReg
		h.Typeflag = tar.TypeReg // archive/tar reads them as regular files (holes as zeros)
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		a.warn(rel, "tar entry type %q skipped", h.Typeflag)
		return nil
	}
	if (h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock) && a.o.Rootless {
		a.warn(rel, "device node skipped: creating it needs privilege")
		return nil
	}
	parent, err := a.mkdirAll(dir)
	if err != nil {
		return err
	}
	if err := a.writable(parent, dir); err != nil {
		return err
	}
	if err := a.create(parent, dir, base, h, r); err != nil {
		return err
	}
	a.created[rel] = true
	return nil
}
