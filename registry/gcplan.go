package registry

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// gcPlan is what a collection would delete, as decided from one snapshot.
type gcPlan struct {
	// manifests maps a repository to the revisions to delete from it.
	manifests map[string][]digest.Digest
	// blobs are the blobs to delete from the blob store, with their sizes.
	blobs map[digest.Digest]int64
}

// digests is every digest the plan may delete something of: what the
// collection puts a sweep marker on.
func (p *gcPlan) digests() []digest.Digest {
	seen := map[digest.Digest]bool{}
	var out []digest.Digest
	add := func(d digest.Digest) {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, ds := range p.manifests {
		for _, d := range ds {
			add(d)
		}
	}
	for d := range p.blobs {
		add(d)
	}
	return out
}

func (p *gcPlan) empty() bool { return len(p.manifests) == 0 && len(p.blobs) == 0 }

// plan decides what to delete from snapshot s: with deleteUntagged the
// revisions no kept manifest needs (see keep), and the blobs that no kept
// manifest references and that nothing wrote or linked at or after cutoff.
// before is nil for a collection's first scan; for its second, it is the
// first: whatever the second scan sees that the first did not, or sees
// written again, was written while the collection ran and counts as
// written after cutoff, whatever its timestamp says. Storage timestamps
// can lag the collection's clock (a filesystem's mtime trails the clock
// by up to a kernel tick; another machine's clock may be behind), and
// gc.go's argument needs "not in the first scan" to mean "kept by the
// second" exactly: else, with a short grace period, a manifest pushed
// during the first scan kept its revision while its content and the
// blobs it names, counted as garbage by both scans, were deleted.
func (s *snapshot) plan(deleteUntagged bool, cutoff time.Time, before *snapshot) *gcPlan {
	p := &gcPlan{manifests: map[string][]digest.Digest{}, blobs: map[digest.Digest]int64{}}
	marked := map[digest.Digest]bool{}
	newestLink := map[digest.Digest]time.Time{}
	for name, r := range s.repos {
		prev := before.repo(name)
		kept := r.keep(s.docs, deleteUntagged, cutoff, prev)
		for d := range r.revisions {
			if !kept[d] {
				p.manifests[name] = append(p.manifests[name], d)
			}
		}
		for d := range kept {
			marked[d] = true
			if doc := s.docs[d]; doc != nil {
				for _, ref := range doc.references() {
					marked[ref] = true
				}
			}
		}
		for d, mod := range r.links {
			if prev != nil && !unchanged(prev.links, d, mod) {
				marked[d] = true // linked while the collection ran
			}
			if mod.After(newestLink[d]) {
				newestLink[d] = mod
			}
		}
	}
	for d, b := range s.blobs {
		if marked[d] || !b.mod.Before(cutoff) || !newestLink[d].Before(cutoff) {
			continue
		}
		if before != nil {
			if was, ok := before.blobs[d]; !ok || !was.mod.Equal(b.mod) {
				continue // stored while the collection ran
			}
		}
		p.blobs[d] = b.size
	}
	return p
}

// repo is repository name as s saw it: nil when s is nil (no earlier
// scan to compare with), empty when s did not see the repository.
func (s *snapshot) repo(name string) *repoState {
	if s == nil {
		return nil
	}
	if r := s.repos[name]; r != nil {
		return r
	}
	return newRepoState()
}

// unchanged says whether an earlier scan saw d in files with time mod.
func unchanged(files map[digest.Digest]time.Time, d digest.Digest, mod time.Time) bool {
	was, ok := files[d]
	return ok && was.Equal(mod)
}

// references lists the blobs and manifests a manifest needs: config,
// layers and child manifests. Its subject is not among them: a referrer
// does not keep what it refers to.
func (m *manifestDoc) references() []digest.Digest {
	var out []digest.Digest
	if m.Config != nil {
		out = append(out, m.Config.Digest)
	}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	for _, c := range m.Manifests {
		out = append(out, c.Digest)
	}
	return out
}

// keep returns the revisions of r that stay. Without deleteUntagged that
// is all of them. With it, the roots are the tagged manifests and every
// manifest whose revision was written at or after cutoff (an index's
// children and a subject's referrers are pushed before what keeps them,
// and a push by digest may be tagged later); then, transitively, the
// children of a kept index and the referrers of a kept manifest. An
// untagged referrer of an untagged, unreferenced subject goes with its
// subject. A revision whose content cannot be read is kept. With prev
// (the repository in an earlier scan of the same collection), so is
// every revision prev did not see, or saw with another time: it was
// written since, so after cutoff (see plan).
func (r *repoState) keep(docs map[digest.Digest]*manifestDoc, deleteUntagged bool, cutoff time.Time, prev *repoState) map[digest.Digest]bool {
	kept := map[digest.Digest]bool{}
	if !deleteUntagged {
		for d := range r.revisions {
			kept[d] = true
		}
		return kept
	}
	bySubject := map[digest.Digest][]digest.Digest{}
	for subject, refs := range r.referrers {
		bySubject[subject] = append(bySubject[subject], refs...)
	}
	var queue []digest.Digest
	push := func(d digest.Digest) {
		if _, ok := r.revisions[d]; ok && !kept[d] {
			kept[d] = true
			queue = append(queue, d)
		}
	}
	for d, mod := range r.revisions {
		doc := docs[d]
		if doc == nil || !mod.Before(cutoff) || (prev != nil && !unchanged(prev.revisions, d, mod)) {
			push(d)
		}
		if doc != nil && doc.Subject != nil {
			bySubject[doc.Subject.Digest] = append(bySubject[doc.Subject.Digest], d)
		}
	}
	for _, d := range r.tags {
		push(d)
	}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if doc := docs[d]; doc != nil {
			for _, c := range doc.Manifests {
				push(c.Digest)
			}
		}
		for _, ref := range bySubject[d] {
			push(ref)
		}
	}
	return kept
}

// intersect keeps what both plans delete: a collection deletes only what
// it decided to delete both before and after putting its markers down.
func (p *gcPlan) intersect(q *gcPlan) *gcPlan {
	out := &gcPlan{manifests: map[string][]digest.Digest{}, blobs: map[digest.Digest]int64{}}
	for name, ds := range p.manifests {
		again := map[digest.Digest]bool{}
		for _, d := range q.manifests[name] {
			again[d] = true
		}
		for _, d := range ds {
			if again[d] {
				out.manifests[name] = append(out.manifests[name], d)
			}
		}
		if len(out.manifests[name]) == 0 {
			delete(out.manifests, name)
		}
	}
	for d, size := range p.blobs {
		if _, ok := q.blobs[d]; ok {
			out.blobs[d] = size
		}
	}
	return out
}
