package build

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sync/atomic"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/patternmatcher"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// keyVersion changes whenever what a key covers changes, so that records
// of an older imgtool never match.
const keyVersion = "imgtool/build-cache/v1"

// chainKey is the key of a step: the digest of its parent state's key
// and of what the step is, each part as JSON (maps with sorted keys, so
// canonical). BuildKit's instruction structs keep their source line in
// unexported fields, which JSON leaves out: moving an instruction to
// another line does not change its key.
func chainKey(parent digest.Digest, kind string, parts ...any) (digest.Digest, error) {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, p := range append([]any{keyVersion, parent, kind}, parts...) {
		if err := enc.Encode(p); err != nil {
			return "", fmt.Errorf("cache key of %s: %w", kind, err)
		}
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// fileKey is what a step's key holds of one entry it copies. The owner
// is not there (a copy gives its files --chown's owner, which the
// instruction holds) and neither is the mtime: a file touched without
// being changed keeps its cache hit, as in BuildKit.
type fileKey struct {
	Path   string        `json:"p"`
	Type   string        `json:"t"`
	Mode   uint32        `json:"m"`
	Target string        `json:"l,omitempty"` // symlink target, or the first path of a hard-link group
	Digest digest.Digest `json:"d,omitempty"`
}

// fileHasher digests what a COPY, ADD or bind mount reads from a tree:
// exactly the entries the copier would write, after .dockerignore and
// --exclude, in its order.
type fileHasher struct {
	ctx      context.Context
	src      *source
	excludes *patternmatcher.PatternMatcher
	stat     *statCache
	counts   *fileCounts
	enc      *json.Encoder
	links    map[[2]uint64]string
	// pending are keys not written yet, in order; jobs the files among
	// them to read (hashjobs.go).
	pending []fileKey
	jobs    []hashJob
	batch   int           // keys held before they are written (0: maxPendingKeys)
	reads   *atomic.Int64 // counts the files read, for tests (nil: none)
}

// filesDigest digests the entries the sources srcs of src name. It needs
// src's tree: only the build context is hashed; stages and images are
// known by their key.
// The files looked at and read are added to fc (nil: not counted).
func (r *buildRun) filesDigest(ctx context.Context, fc *fileCounts, src *source, srcs []string, excludes []string) (digest.Digest, error) {
	excl, err := newExcludes(excludes)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fh := &fileHasher{ctx: ctx, src: src, excludes: excl, stat: r.stat, counts: fc, enc: json.NewEncoder(h), links: map[[2]uint64]string{}, batch: r.hashBatch}
	if r.b != nil {
		fh.reads = r.b.keyReads
	}
	for _, s := range srcs {
		paths, err := src.match(s)
		if err != nil {
			return "", err
		}
		for _, p := range paths {
			if err := fh.match(p); err != nil {
				return "", err
			}
		}
	}
	if err := fh.flush(); err != nil {
		return "", err
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// match digests one matched source: the entry itself (followed, as the
// copy follows it) and, for a directory, what is below.
func (fh *fileHasher) match(p string) error {
	host, err := fh.src.t.resolve(p)
	if err != nil {
		return fh.src.notFound(p, err.Error())
	}
	var st unix.Stat_t
	if err := unix.Stat(host, &st); err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	if err := fh.entry(host, p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fh.dir(host, p, "")
	}
	return nil
}

// dir digests the entries of a directory with the copier's rules
// (copier.copyDir): ignored or excluded entries are left out, and an
// excluded directory is only looked into when a "!" pattern may bring
// something below it back.
func (fh *fileHasher) dir(host, srcPath, rel string) error {
	if err := fh.ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(host)
	if err != nil {
		return fmt.Errorf("read %s: %w", srcPath, err)
	}
	reinclude := fh.src.descend() || (fh.excludes != nil && fh.excludes.Exclusions())
	for _, e := range entries {
		childPath, childRel := path.Join(srcPath, e.Name()), path.Join(rel, e.Name())
		childHost := filepath.Join(host, e.Name())
		skip := fh.src.ignored(childPath) || fh.excluded(childRel)
		var st unix.Stat_t
		if err := unix.Lstat(childHost, &st); err != nil {
			return fmt.Errorf("stat %s: %w", childPath, err)
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if skip && !(isDir && reinclude) {
			continue
		}
		if !skip {
			if err := fh.entry(childHost, childPath, &st); err != nil {
				return err
			}
		}
		if isDir {
			if err := fh.dir(childHost, childPath, childRel); err != nil {
				return err
			}
		}
	}
	return nil
}

func (fh *fileHasher) excluded(rel string) bool {
	if fh.excludes == nil {
		return false
	}
	ok, err := fh.excludes.MatchesOrParentMatches(rel)
	return err == nil && ok
}

// entry writes one entry's fileKey.
func (fh *fileHasher) entry(host, p string, st *unix.Stat_t) error {
	k := fileKey{Path: p, Mode: st.Mode &^ unix.S_IFMT}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		k.Type = "dir"
	case unix.S_IFREG:
		k.Type = "file"
		id := [2]uint64{uint64(st.Dev), st.Ino}
		if first, ok := fh.links[id]; ok && st.Nlink > 1 {
			k.Type, k.Target = "hardlink", first
			break
		}
		if st.Nlink > 1 {
			fh.links[id] = p
		}
		rel := fh.src.t.rel(host)
		fh.counts.add(1, 0, 0)
		if d, ok := fh.stat.lookup(rel, st); ok {
			k.Digest = d
			break
		}
		fh.jobs = append(fh.jobs, hashJob{key: len(fh.pending), host: host, rel: rel, st: *st})
	case unix.S_IFLNK:
		target, err := os.Readlink(host)
		if err != nil {
			return fmt.Errorf("read link %s: %w", p, err)
		}
		k.Type, k.Target = "symlink", target
	default:
		return nil // not copied
	}
	fh.pending = append(fh.pending, k)
	if len(fh.pending) >= cmp.Or(fh.batch, maxPendingKeys) {
		return fh.flush()
	}
	return nil
}

// isURL reports whether an ADD source is a URL to download.
func isURL(src string) bool {
	u, err := url.Parse(src)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// mountKey is what a RUN's key holds of one --mount: the mount as
// written (expanded), the key of the stage or image it reads from, and
// for a bind of the context, the digest of the files it shows. Cache
// mounts and secrets contribute their spelling only: their content is
// not part of the step's identity, as in BuildKit.
type mountKey struct {
	instructions.Mount
	FromKey digest.Digest `json:"fromKey,omitempty"`
	Files   digest.Digest `json:"files,omitempty"`
}

// runKey is the key of a RUN: the parent's key, the command (with its
// heredocs and flags), and what it runs with. The environment holds the
// ARGs in scope and the proxy build args: a --build-arg no ARG declares
// changes nothing.
func (s *stageRun) runKey(ctx context.Context, c *instructions.RunCommand) (digest.Digest, error) {
	var mounts []mountKey
	for _, m := range instructions.GetMounts(c) {
		mk := mountKey{Mount: *m}
		if m.Type == instructions.MountTypeBind {
			src := s.r.context
			if m.From != "" {
				var err error
				if src, err = s.r.fromSource(ctx, m.From, s.idx); err != nil {
					return "", err
				}
				mk.FromKey = src.key
			} else {
				var err error
				if mk.Files, err = s.r.filesDigest(ctx, &s.files, src, []string{m.Source}, nil); err != nil {
					return "", err
				}
			}
		}
		mounts = append(mounts, mk)
	}
	cfg := s.img.Config
	return chainKey(s.key, "RUN", c, s.runEnv(), cfg.User, cfg.WorkingDir, s.shell(), instructions.GetNetwork(c), mounts)
}

// copyKey is the key of a COPY or ADD: the instruction (expanded), the
// key of the stage or image it copies from, or the digest of the context
// files it copies, and for an ADD of a git repository, the commit its
// ref names. It reports false for an ADD of a URL without --checksum,
// whose content is only known once downloaded.
func (s *stageRun) copyKey(ctx context.Context, c instructions.Command, from *source, srcs, excludes []string, checksum string) (digest.Digest, bool, error) {
	if from.key != "" {
		k, err := chainKey(s.key, c.Name(), c, from.key)
		return k, true, err
	}
	var gits []gitKey
	if add, ok := c.(*instructions.AddCommand); ok {
		var err error
		a := &addOp{checksum: checksum, keepGitDir: add.KeepGitDir}
		if gits, srcs, err = s.addGitKeys(ctx, a, srcs); err != nil {
			return "", false, err
		}
	}
	var local []string
	for _, src := range srcs {
		if _, ok := c.(*instructions.AddCommand); ok && isURL(src) {
			if checksum == "" {
				return "", false, nil
			}
			continue // the instruction holds the URL and its checksum
		}
		local = append(local, src)
	}
	files, err := s.r.filesDigest(ctx, &s.files, from, local, excludes)
	if err != nil {
		return "", false, err
	}
	if len(gits) > 0 {
		k, err := chainKey(s.key, c.Name(), c, files, gits)
		return k, true, err
	}
	k, err := chainKey(s.key, c.Name(), c, files)
	return k, true, err
}
