package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/imgtool/imgtool/manifest"
	"github.com/opencontainers/go-digest"
)

// snapshot is what one pass over storage saw: every repository's tags,
// revisions, referrer entries and blob links, every blob in the blob
// store, and the parsed content of every manifest a repository holds.
// It is read through List/Stat/GetContent only, so it works over any
// storage driver; writes that race with it are the subject of gc.go's
// argument, not of this code.
type snapshot struct {
	repos map[string]*repoState
	blobs map[digest.Digest]fileState
	docs  map[digest.Digest]*manifestDoc // nil: content missing or unreadable
}

// fileState is a stored file's size and last write.
type fileState struct {
	size int64
	mod  time.Time
}

// repoState is one repository in a snapshot.
type repoState struct {
	tags      map[string]digest.Digest
	revisions map[digest.Digest]time.Time
	// referrers maps a subject to the referrers its index lists.
	referrers map[digest.Digest][]digest.Digest
	links     map[digest.Digest]time.Time
}

func newRepoState() *repoState {
	return &repoState{
		tags:      map[string]digest.Digest{},
		revisions: map[digest.Digest]time.Time{},
		referrers: map[digest.Digest][]digest.Digest{},
		links:     map[digest.Digest]time.Time{},
	}
}

// scan takes a snapshot of the whole layout. Manifests already parsed in
// known (content addressed, so unchanged) are not read again.
func (g *Registry) scan(ctx context.Context, known map[digest.Digest]*manifestDoc) (*snapshot, error) {
	s := &snapshot{
		repos: map[string]*repoState{},
		blobs: map[digest.Digest]fileState{},
		docs:  map[digest.Digest]*manifestDoc{},
	}
	if err := g.walk(ctx, repositoriesPath(), func(fi storagedriver.FileInfo) error {
		if path.Base(fi.Path()) == "_uploads" {
			return storagedriver.ErrSkipDir // sessions hold no references
		}
		if fi.IsDir() {
			return nil
		}
		return g.scanRepoFile(ctx, s, fi)
	}); err != nil {
		return nil, fmt.Errorf("scan repositories: %w", err)
	}
	if err := g.walk(ctx, path.Join(layoutRoot, "blobs"), func(fi storagedriver.FileInfo) error {
		if d, ok := blobFromPath(fi.Path()); ok && !fi.IsDir() {
			s.blobs[d] = fileState{size: fi.Size(), mod: fi.ModTime()}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("scan blobs: %w", err)
	}
	for _, r := range s.repos {
		for d := range r.revisions {
			if _, done := s.docs[d]; done {
				continue
			}
			if doc := known[d]; doc != nil {
				s.docs[d] = doc
				continue
			}
			doc, err := g.readDoc(ctx, d, s.blobs[d])
			if err != nil {
				return nil, err
			}
			s.docs[d] = doc
		}
	}
	return s, nil
}

// walk visits the files and directories under root with the driver's
// Walk (a flat listing on S3); a root that does not exist is empty.
func (g *Registry) walk(ctx context.Context, root string, f storagedriver.WalkFn) error {
	err := g.driver.Walk(ctx, root, f)
	if isNotFound(err) {
		return nil
	}
	return err
}

// readDoc parses manifest d's content. Content that is missing (a
// crash between data and revision cannot cause that, since data is
// written first; a concurrent collection or an operator can) or that does
// not parse yields nil: the revision is then kept and its children are
// unknown, which can only keep more.
func (g *Registry) readDoc(ctx context.Context, d digest.Digest, fs fileState) (*manifestDoc, error) {
	if fs.size == 0 || fs.size > manifest.MaxManifestSize {
		return nil, nil
	}
	body, err := g.driver.GetContent(ctx, blobDataPath(d))
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", d, err)
	}
	doc := &manifestDoc{}
	if json.Unmarshal(body, doc) != nil {
		return nil, nil
	}
	return doc, nil
}

// scanRepoFile records one file under repositories/ in s. Paths that are
// not part of the layout (temporary files of an atomic write, upload
// sessions) are ignored.
func (g *Registry) scanRepoFile(ctx context.Context, s *snapshot, fi storagedriver.FileInfo) error {
	rel := strings.TrimPrefix(fi.Path(), repositoriesPath()+"/")
	parts := strings.Split(rel, "/")
	i := 0
	for i < len(parts) && !strings.HasPrefix(parts[i], "_") {
		i++
	}
	name, rest := strings.Join(parts[:i], "/"), parts[i:]
	if !validName(name) || len(rest) == 0 || rest[len(rest)-1] != "link" {
		return nil
	}
	r := s.repos[name]
	if r == nil {
		r = newRepoState()
		s.repos[name] = r
	}
	switch {
	case rest[0] == "_layers" && len(rest) == 4:
		if d, ok := digestFrom(rest[1], rest[2]); ok {
			r.links[d] = fi.ModTime()
		}
	case rest[0] == "_manifests" && len(rest) == 5 && rest[1] == "revisions":
		if d, ok := digestFrom(rest[2], rest[3]); ok {
			r.revisions[d] = fi.ModTime()
		}
	case rest[0] == "_manifests" && len(rest) == 4 && rest[1] == "tags" && validTag(rest[2]):
		raw, err := g.driver.GetContent(ctx, fi.Path())
		if isNotFound(err) {
			return nil // untagged meanwhile
		}
		if err != nil {
			return fmt.Errorf("read tag %s of %s: %w", rest[2], name, err)
		}
		if d, err := parseDigest(string(raw)); err == nil {
			r.tags[rest[2]] = d
		}
	case rest[0] == "_referrers" && len(rest) == 6:
		subject, ok1 := digestFrom(rest[1], rest[2])
		ref, ok2 := digestFrom(rest[3], rest[4])
		if ok1 && ok2 {
			r.referrers[subject] = append(r.referrers[subject], ref)
		}
	}
	return nil
}

// digestFrom rebuilds a digest from its two path components.
func digestFrom(alg, hex string) (digest.Digest, bool) {
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	if _, err := parseDigest(string(d)); err != nil {
		return "", false
	}
	return d, true
}

// blobFromPath reads the digest out of blobs/<alg>/<xx>/<hex>/data.
func blobFromPath(p string) (digest.Digest, bool) {
	parts := strings.Split(strings.TrimPrefix(p, layoutRoot+"/blobs/"), "/")
	if len(parts) != 4 || parts[3] != "data" || !strings.HasPrefix(parts[2], parts[1]) {
		return "", false
	}
	return digestFrom(parts[0], parts[2])
}
