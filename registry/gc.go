package registry

// Online garbage collection, and why it is safe while the registry takes
// pushes (from any number of replicas over the same storage).
//
// What is kept. Without DeleteUntagged every manifest revision is kept.
// With it, a repository keeps its tagged manifests, every manifest whose
// revision was written within the grace period, and transitively the
// child manifests of a kept index and the referrers (manifests with a
// `subject`) of a kept manifest; other revisions are deleted with their
// referrers-index entries. So an untagged signature of a tagged image
// stays, and an untagged referrer of an untagged, unreachable subject
// goes with it. Every blob a kept manifest names (config, layers, child
// manifests, its own content) is kept; any other blob is deleted once
// its content and every repository's link to it are older than the
// grace period, together with those links. Upload sessions started more
// than UploadTTL ago are deleted (PurgeUploads).
//
// How a collection runs:
//  1. cutoff = start - Grace; scan everything (S1) and plan (P1).
//  2. Put a sweep marker on every digest in P1 (gcguard.go).
//  3. Scan again (S2), plan (P2; what S1 did not see counts as new), and
//     delete only what is in both plans:
//     revisions and referrer entries, then blob content, then the links
//     to deleted blobs; stop deleting markerHold after step 2.
//  4. Rewrite the "done" record, then remove the markers.
//
// How a manifest PUT runs: wait out markers on its digests; check that
// its blobs and child manifests are in the repository (as without GC);
// write content, revision, referrer entry and tags (the commit); then,
// if a collection is running or finished less than markerStale ago,
// wait out its markers and check again: restore the manifest's own
// content, revision and referrer entry if they went (and check again
// after that write), or, if a blob or child it references went, take the
// manifest back and answer MANIFEST_BLOB_UNKNOWN. A PUT that fails in any
// other way after its first write (storage error, client gone, the
// check itself failing) takes back what it added (a revision or tags
// that were there before the PUT stay, so that a failed re-push never
// deletes an earlier push), since clients retry a
// push by asking whether the tag exists (go-containerregistry does), so
// a revision left by a failed PUT would count as pushed unchecked.
// Waiting out markers considers only the runs in /_gc (not the done
// record, nor a driver's temporary files there).
//
// The claim: when a collection finishes, every manifest revision that
// exists names only blobs and child manifests that exist, unless it was
// already broken before (or a failed PUT could not take it back, which it
// reports); and a manifest PUT answered 201 is such a revision. Storage
// must be strongly consistent (the filesystem driver is; S3 has been
// since 2020) and clocks agree to well within a minute.
//
// Proof. A collection G deletes digest x (a blob's content, or a
// revision) only if x is in P1 and P2, so only after its marker on x was
// written (time W) and S2 had started. Let M be a revision that exists
// after G and names x (or is x's revision itself).
//   - If S1 and S2 both saw M and M was not written again after S2: G
//     deleted x, so neither scan kept M (a kept M marks all it names),
//     so M was in P1 and P2 and G deleted M too: contradiction.
//   - If S2 saw M but S1 did not (or saw it with another time): M was
//     written after S1 began, and the plan from S2 keeps every such
//     revision as a root, comparing with S1 rather than with cutoff
//     (storage timestamps may lag the collection's clock: a file's mtime
//     trails it by up to a kernel tick), so it marked what M names:
//     contradiction. (Likewise a blob or link that S2 sees new is kept.)
//   - Otherwise M was written by a PUT whose commit C came after S2
//     listed M's repository, so after W. If that PUT failed, it took M
//     back (whatever failed), so M exists only if some PUT answered 201;
//     take that one. Let P be when it began checking references. If x
//     went before P, the check refused M (or, x being M's own content or
//     revision, the commit wrote it again).
//     If x went after P: the PUT's check after C (at X) lists the runs;
//     G's run exists from before W until G rewrites the "done" record
//     after its last deletion, that record counts for markerStale, and
//     X comes less than markerStale/2 after P (else the PUT checks
//     anyway), so the PUT sees G running or just done. It waits until
//     G's markers are gone (G deletes nothing after that: markers go
//     after the last deletion, and a marker past markerStale belongs to
//     a collection past markerHold), finds x missing, and takes M back
//     or restores x; a restoration is a new commit, to which the same
//     reasoning applies, at most five times.
//
// Pushes in flight (blob uploaded, manifest not yet PUT) do not fail
// because of a collection whose grace period is longer than the push
// (less a minute): an upload or a mount writes the repository's link, a
// HEAD that answers "already there" refreshes a link older than a
// minute, and a blob whose content or any link is newer than the cutoff
// is not a candidate. What a collection was deleting while an upload
// finished, a mount linked or a HEAD answered is waited for and then
// restored from the upload, or reported absent so that the client
// uploads it. With a grace period of 0 such pushes may fail with
// MANIFEST_BLOB_UNKNOWN; they never succeed with a blob missing.
//
// A collection that crashes leaves its markers: writers touching those
// digests wait until markerStale, and the next collection removes them.
// A collection whose marking and second scan outlast markerHold (a very
// large registry on slow storage) deletes nothing more and says so.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// GCOptions tune a garbage collection.
type GCOptions struct {
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
	// DeleteUntagged deletes the manifests nothing keeps (see gc.go).
	DeleteUntagged bool
	// Grace keeps everything written, linked or refreshed more recently.
	Grace time.Duration
	// UploadTTL deletes upload sessions started longer ago; 0 keeps them.
	UploadTTL time.Duration

	// now is the clock the cutoffs are taken from (tests move it).
	now func() time.Time
}

// GCReport says what a collection deleted (or, dry, would delete).
type GCReport struct {
	DryRun       bool          `json:"dryRun"`
	Repositories int           `json:"repositories"`
	Manifests    int           `json:"manifests"`
	Blobs        int           `json:"blobs"`
	Bytes        int64         `json:"bytes"`
	Links        int           `json:"links"`
	Uploads      int           `json:"uploads"`
	Duration     time.Duration `json:"-"`
}

// GC collects the garbage of the registry stored in driver; it is safe
// to run while servers over the same storage take pushes (see gc.go).
func GC(ctx context.Context, driver storagedriver.StorageDriver, opts GCOptions) (GCReport, error) {
	return New(driver, Options{}).GC(ctx, opts)
}

// GC collects the registry's garbage; see the package-level GC.
func (g *Registry) GC(ctx context.Context, opts GCOptions) (GCReport, error) {
	if opts.Grace < 0 || opts.UploadTTL < 0 {
		return GCReport{}, errors.New("garbage collection: grace and upload TTL must not be negative")
	}
	clock := opts.now
	if clock == nil {
		clock = time.Now
	}
	began := time.Now()
	start := clock()
	cutoff := start.Add(-opts.Grace)
	rep := GCReport{DryRun: opts.DryRun}
	if !opts.DryRun {
		if err := g.clearStaleRuns(ctx); err != nil {
			return rep, err
		}
	}
	s, err := g.scan(ctx, nil)
	if err != nil {
		return rep, err
	}
	rep.Repositories = len(s.repos)
	p := s.plan(opts.DeleteUntagged, cutoff, nil)
	if opts.DryRun {
		rep.count(s, p)
	} else if !p.empty() {
		if err := g.collect(ctx, s, p, opts.DeleteUntagged, cutoff, &rep); err != nil {
			return rep, err
		}
	}
	if opts.UploadTTL > 0 {
		n, err := g.purgeUploads(ctx, start.Add(-opts.UploadTTL), opts.DryRun)
		rep.Uploads = n
		if err != nil {
			return rep, err
		}
	}
	rep.Duration = time.Since(began)
	return rep, nil
}

// count fills r with what plan p would delete from snapshot s.
func (r *GCReport) count(s *snapshot, p *gcPlan) {
	for _, ds := range p.manifests {
		r.Manifests += len(ds)
	}
	for d, size := range p.blobs {
		r.Blobs++
		r.Bytes += size
		for _, repo := range s.repos {
			if _, ok := repo.links[d]; ok {
				r.Links++
			}
		}
	}
}

// collect is steps 2 to 4 of gc.go for plan p1, made from snapshot s1.
func (g *Registry) collect(ctx context.Context, s1 *snapshot, p1 *gcPlan, deleteUntagged bool, cutoff time.Time, rep *GCReport) (err error) {
	run, err := newRunID()
	if err != nil {
		return err
	}
	marked := time.Now()
	defer func() {
		err = errors.Join(err, g.finishRun(context.WithoutCancel(ctx), run))
	}()
	for _, d := range p1.digests() {
		if err := g.driver.PutContent(ctx, markerPath(run, d), []byte(d)); err != nil {
			return fmt.Errorf("garbage collection: mark %s: %w", d, err)
		}
	}
	s2, err := g.scan(ctx, s1.docs)
	if err != nil {
		return err
	}
	p := p1.intersect(s2.plan(deleteUntagged, cutoff, s1))
	return g.sweep(ctx, s2, p, marked.Add(markerHold), rep)
}

// errHold stops a collection that ran past markerHold after marking,
// when writers stop waiting for it.
var errHold = errors.New("garbage collection: the second scan outlasted the marker hold; deleted nothing more, run it again")

// sweep deletes what plan p says, as seen in snapshot s: revisions with
// their referrer entries first (so no revision ever names content
// already deleted), then blobs with their links, until deadline.
func (g *Registry) sweep(ctx context.Context, s *snapshot, p *gcPlan, deadline time.Time, rep *GCReport) error {
	// del deletes p; gone is false when a writer put something in p while
	// it was being deleted (a push linking the blob again, or moving it
	// into place): that writer's guard already restores whatever this
	// run deleted, so the run leaves p as the writer made it and goes on.
	del := func(what, p string) (gone bool, err error) {
		if time.Now().After(deadline) {
			return false, errHold
		}
		if err := g.driver.Delete(ctx, p); err != nil && !isNotFound(err) {
			if isRefilled(err) {
				return false, nil
			}
			return false, fmt.Errorf("garbage collection: delete %s: %w", what, err)
		}
		return true, nil
	}
	for name, ds := range p.manifests {
		r := s.repos[name]
		subjects := map[string]bool{}
		for subject, refs := range r.referrers {
			for _, ref := range refs {
				subjects[path.Dir(referrerLinkPath(name, subject, ref))] = true
			}
		}
		for _, d := range ds {
			if doc := s.docs[d]; doc != nil && doc.Subject != nil {
				entry := path.Dir(referrerLinkPath(name, doc.Subject.Digest, d))
				if _, err := del("referrer "+d.String()+" of "+name, entry); err != nil {
					return err
				}
				delete(subjects, entry)
			}
			for entry := range subjects {
				if path.Base(entry) == d.Encoded() && path.Base(path.Dir(entry)) == string(d.Algorithm()) {
					if _, err := del("referrer "+d.String()+" of "+name, entry); err != nil {
						return err
					}
				}
			}
			gone, err := del("manifest "+d.String()+" of "+name, path.Dir(revisionLinkPath(name, d)))
			if err != nil {
				return err
			}
			if gone {
				rep.Manifests++
			}
		}
	}
	for d, size := range p.blobs {
		gone, err := del("blob "+d.String(), path.Dir(blobDataPath(d)))
		if err != nil {
			return err
		}
		if !gone {
			continue // stored again meanwhile: its links stay with it
		}
		rep.Blobs++
		rep.Bytes += size
		for name, r := range s.repos {
			if _, ok := r.links[d]; !ok {
				continue
			}
			gone, err := del("link to "+d.String()+" in "+name, path.Dir(layerLinkPath(name, d)))
			if err != nil {
				return err
			}
			if gone {
				rep.Links++
			}
		}
	}
	return nil
}

// finishRun records that a collection finished (after its last
// deletion), then removes run's markers, letting waiting writers go on.
func (g *Registry) finishRun(ctx context.Context, run string) error {
	if err := g.driver.PutContent(ctx, gcDonePath(), []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return fmt.Errorf("garbage collection: finish run: %w", err)
	}
	if err := g.driver.Delete(ctx, gcRunPath(run)); err != nil && !isNotFound(err) {
		return fmt.Errorf("garbage collection: remove markers: %w", err)
	}
	return nil
}

// clearStaleRuns removes the markers of collections that crashed, or
// stopped deleting, more than markerStale ago.
func (g *Registry) clearStaleRuns(ctx context.Context) error {
	runs, err := g.driver.List(ctx, gcPath())
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("garbage collection: list runs: %w", err)
	}
	for _, run := range runs {
		if !isRunPath(run) {
			continue // the done record, or a driver's temporary file
		}
		var newest time.Time
		if err := g.walk(ctx, run, func(fi storagedriver.FileInfo) error {
			if !fi.IsDir() && fi.ModTime().After(newest) {
				newest = fi.ModTime()
			}
			return nil
		}); err != nil {
			return fmt.Errorf("garbage collection: read run %s: %w", path.Base(run), err)
		}
		if time.Since(newest) <= markerStale {
			continue
		}
		if err := g.driver.Delete(ctx, run); err != nil && !isNotFound(err) {
			return fmt.Errorf("garbage collection: clear run %s: %w", path.Base(run), err)
		}
	}
	return nil
}

// newRunID names a collection run.
func newRunID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("garbage collection: make run id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
