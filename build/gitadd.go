package build

import (
	"context"
	"fmt"
	"path/filepath"
)

// ADD of a git repository (docker's ADD https://host/repo.git#REF:SUBDIR
// /dst): the repository at the commit REF names is copied into the
// destination, without .git unless --keep-git-dir. The step's key holds
// the commit, found with ls-remote before anything is fetched; the fetch
// takes that same commit.

// addGitSource reports whether an ADD source is a git repository, by
// docker's rule (a bare github.com/... is a local path to ADD).
func addGitSource(src string) (GitSource, bool, error) {
	return ParseGitSource(src, false, false)
}

// withFlags applies ADD's --checksum and --keep-git-dir to g, refusing
// a conflict with the URL's own ?checksum= or ?keep-git-dir=, as
// BuildKit does.
func (a *addOp) withFlags(g GitSource, src string) (GitSource, error) {
	if a.checksum != "" {
		if g.Checksum != "" && g.Checksum != a.checksum {
			return g, fmt.Errorf("ADD %s: --checksum=%s and the URL's checksum %s differ", redact(src), a.checksum, g.Checksum)
		}
		g.Checksum = a.checksum
	}
	if a.keepGitDir != nil {
		g.KeepGitDir = *a.keepGitDir
	}
	return g, nil
}

// gitCommit resolves g once per build, so that the step's key and its
// fetch see one commit.
func (r *buildRun) gitCommit(ctx context.Context, g GitSource) (gitCommit, error) {
	k := fmt.Sprintf("%s#%s@%s", g.Remote, g.Ref, g.Checksum)
	r.mu.Lock()
	c, ok := r.gitCommits[k]
	r.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := g.resolve(ctx)
	if err != nil {
		return c, err
	}
	r.mu.Lock()
	r.gitCommits[k] = c
	r.mu.Unlock()
	return c, nil
}

// fetchGit checks g out under the build's temporary directory and
// returns its tree as the one match to copy.
func (a *addOp) fetchGit(ctx context.Context, s *stageRun, g GitSource, src string) ([]match, error) {
	g, err := a.withFlags(g, src)
	if err != nil {
		return nil, err
	}
	c, err := s.r.gitCommit(ctx, g)
	if err != nil {
		return nil, err
	}
	dir, err := a.tmp("git-")
	if err != nil {
		return nil, err
	}
	root, err := g.fetch(ctx, c, filepath.Join(dir, "repo"))
	if err != nil {
		return nil, err
	}
	t, err := newTree(root)
	if err != nil {
		return nil, err
	}
	from := &source{t: t, what: "git repository " + redact(g.Remote) + " at " + c.commit}
	return []match{{src: from, path: "/"}}, nil
}

// gitKey is what an ADD's key holds of a git source besides the
// instruction: the commit its ref names now.
type gitKey struct {
	Remote string `json:"remote"`
	Commit string `json:"commit"`
}

// addGitKeys resolves the git sources of an ADD for its key; local is
// what remains to digest.
func (s *stageRun) addGitKeys(ctx context.Context, a *addOp, srcs []string) (keys []gitKey, local []string, err error) {
	for _, src := range srcs {
		g, ok, err := addGitSource(src)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			local = append(local, src)
			continue
		}
		if g, err = a.withFlags(g, src); err != nil {
			return nil, nil, err
		}
		c, err := s.r.gitCommit(ctx, g)
		if err != nil {
			return nil, nil, err
		}
		keys = append(keys, gitKey{Remote: g.Remote, Commit: c.commit})
	}
	return keys, local, nil
}
