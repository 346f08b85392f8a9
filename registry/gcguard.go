package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The writer's side of the handshake with garbage collection (gc.go
// argues why it is enough). A collection puts a sweep marker on every
// digest it may delete something of,
//
//	/imgtool/v1/_gc/<run>/<algorithm>/<hex>
//
// before its second scan; when it is done it rewrites /imgtool/v1/_gc/done
// and removes its run.
// A writer that makes something reference a digest checks for markers
// after its write; when it finds one it waits for the collection to
// finish and then repairs or refuses what it wrote.
const (
	// markerHold bounds how long after putting its markers down a
	// collection may still delete anything.
	markerHold = 5 * time.Minute
	// markerStale is when a writer stops waiting for a marker: a marker
	// older than this belongs to a collection past markerHold (or one that
	// crashed), which deletes nothing more. The margin over markerHold
	// covers clock skew between the machines and the storage.
	markerStale = markerHold + time.Minute
	// linkRefresh is how old a blob link or revision may get before a
	// HEAD rewrites it, so that "exists, skip the upload" answers keep what
	// they answered for a collection's grace period (less this much).
	linkRefresh = time.Minute
)

func gcPath() string { return path.Join(layoutRoot, "_gc") }

func gcRunPath(run string) string { return path.Join(gcPath(), run) }

func markerPath(run string, d digest.Digest) string {
	return path.Join(gcRunPath(run), string(d.Algorithm()), d.Encoded())
}

// gcDonePath is rewritten by every collection after its last deletion.
func gcDonePath() string { return path.Join(gcPath(), "done") }

// isRunPath says whether p, an entry of gcPath, is a collection's run:
// not the done record, nor a driver's temporary file of it (the
// filesystem driver writes done.<uuid>.tmp and renames it). Run names
// (newRunID) have no dot.
func isRunPath(p string) bool {
	run := path.Base(p)
	return run != path.Base(gcDonePath()) && !strings.Contains(run, ".")
}

// settle waits until no collection holds a marker on any of ds, and says
// whether a collection is running or finished less than markerStale ago:
// then a deletion may have happened after the caller's last write, and
// the caller checks what it wrote. Without any run it costs one List and
// one Stat. It waits at most until markerStale after a marker was written.
func (g *Registry) settle(ctx context.Context, ds []digest.Digest) (bool, error) {
	entries, err := g.driver.List(ctx, gcPath())
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check for garbage collection: %w", err)
	}
	active := false
	for _, e := range entries {
		if e == gcDonePath() {
			fi, err := g.driver.Stat(ctx, e)
			active = active || err != nil || time.Since(fi.ModTime()) < markerStale
			continue
		}
		if !isRunPath(e) {
			// Not a run: a driver's temporary file, such as the
			// filesystem driver's done.<uuid>.tmp while the record is
			// rewritten. Looking for markers under it would fail.
			continue
		}
		active = true
		for _, d := range ds {
			if err := g.awaitMarker(ctx, markerPath(path.Base(e), d)); err != nil {
				return true, err
			}
		}
	}
	return active, nil
}

// awaitMarker waits while the marker at p exists and is not stale.
func (g *Registry) awaitMarker(ctx context.Context, p string) error {
	delay := 20 * time.Millisecond
	for {
		fi, err := g.driver.Stat(ctx, p)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("check garbage collection marker: %w", err)
		}
		if time.Since(fi.ModTime()) > markerStale {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for garbage collection: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// refresh rewrites the link at p with content when it is older than
// linkRefresh, so that a HEAD a client bases "already there" on counts as
// recent use. Failing to refresh (read-only storage, say) only weakens
// that, so it is logged at debug level, not returned.
func (g *Registry) refresh(ctx context.Context, p string, content []byte) {
	fi, err := g.driver.Stat(ctx, p)
	if err != nil || time.Since(fi.ModTime()) < linkRefresh {
		return
	}
	if err := g.driver.PutContent(ctx, p, content); err != nil {
		slog.DebugContext(ctx, "refresh link", "path", p, "err", err)
	}
}

// guardLink is the writer's side for a blob link just written (at
// written) by an upload or a mount: if a collection may have deleted blob
// d since, make sure it is there, restoring it with restore (nil: cannot)
// and linking it again.
func (g *Registry) guardLink(ctx context.Context, name string, d digest.Digest, written time.Time, restore func() error) error {
	active, err := g.settle(ctx, []digest.Digest{d})
	if err != nil || (!active && time.Since(written) < markerStale/2) {
		return err
	}
	if _, err := g.globalBlobSize(ctx, d); err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			return err
		}
		if restore == nil {
			return newError(errBlobUnknown, "blob %s was garbage collected meanwhile; upload it", d)
		}
		if err := restore(); err != nil {
			return fmt.Errorf("restore blob %s after garbage collection: %w", d, err)
		}
	}
	return g.linkBlob(ctx, name, d)
}

// guardManifest is the writer's side for a manifest just stored (its
// writes began at written): if a collection may have deleted something
// of it or something it references since, it restores what it can (its
// own content, revision and referrer entry) and, when a blob or child
// manifest it references went, refuses it. Whenever it returns an error
// the caller takes the manifest back (putManifest), so that neither a
// 201 nor a revision left behind by a failed PUT names missing blobs.
func (g *Registry) guardManifest(ctx context.Context, name string, desc ocispec.Descriptor, body []byte, m *manifestDoc, written time.Time) error {
	ds := append([]digest.Digest{desc.Digest}, m.references()...)
	for range 5 {
		active, err := g.settle(ctx, ds)
		if err != nil || (!active && time.Since(written) < markerStale/2) {
			return err
		}
		if err := g.checkReferences(ctx, name, m); err != nil {
			return err
		}
		missing, err := g.storedWhole(ctx, name, desc.Digest, m)
		if err != nil || !missing {
			return err
		}
		// Restoring is a new write: check again after it.
		written = time.Now()
		if err := g.storeManifest(ctx, name, desc, body, m, nil); err != nil {
			return err
		}
	}
	return fmt.Errorf("store manifest %s in %s: garbage collection kept removing it", desc.Digest, name)
}

// storedWhole says whether some part of manifest d in name is missing:
// its content, its revision, or its referrer entry.
func (g *Registry) storedWhole(ctx context.Context, name string, d digest.Digest, m *manifestDoc) (bool, error) {
	paths := []string{blobDataPath(d), revisionLinkPath(name, d)}
	if m.Subject != nil {
		paths = append(paths, referrerLinkPath(name, m.Subject.Digest, d))
	}
	for _, p := range paths {
		if _, err := g.driver.Stat(ctx, p); isNotFound(err) {
			return true, nil
		} else if err != nil {
			return false, fmt.Errorf("check manifest %s in %s: %w", d, name, err)
		}
	}
	return false, nil
}

// unstore takes back manifest d from name, with the tags this request
// set on it: a PUT that stored it and then failed, whether because a
// collection deleted something it references or because it could not
// make sure of that. A client that retries finds the manifest gone and
// pushes it again, instead of taking a HEAD that finds it (by tag) for
// a push that succeeded.
func (g *Registry) unstore(ctx context.Context, name string, d digest.Digest, m *manifestDoc, tags []string) error {
	if err := g.untagSome(ctx, name, d, tags); err != nil {
		return err
	}
	var errs []error
	del := func(p string) {
		if err := g.driver.Delete(ctx, p); err != nil && !isNotFound(err) {
			errs = append(errs, err)
		}
	}
	if m.Subject != nil {
		del(path.Dir(referrerLinkPath(name, m.Subject.Digest, d)))
	}
	del(path.Dir(revisionLinkPath(name, d)))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("take back manifest %s of %s: %w", d, name, err)
	}
	return nil
}

// untagSome deletes those of tags that still name manifest d.
func (g *Registry) untagSome(ctx context.Context, name string, d digest.Digest, tags []string) error {
	var errs []error
	for _, t := range tags {
		if raw, err := g.driver.GetContent(ctx, tagLinkPath(name, t)); err == nil && string(raw) == d.String() {
			if err := g.driver.Delete(ctx, path.Dir(tagLinkPath(name, t))); err != nil && !isNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("take back the tags of manifest %s in %s: %w", d, name, err)
	}
	return nil
}

// headBlob is the registry's side of "HEAD says the blob is there, so the
// client skips its upload": the repository's link is refreshed, and a
// blob a collection was deleting meanwhile is reported absent.
func (g *Registry) headBlob(ctx context.Context, name string, d digest.Digest) (int64, error) {
	g.refresh(ctx, layerLinkPath(name, d), []byte(d))
	if _, err := g.settle(ctx, []digest.Digest{d}); err != nil {
		return 0, err
	}
	return g.blobSize(ctx, name, d)
}
