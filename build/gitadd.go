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
//
// The Dockerfile names these repositories, not the person running the
// build, so git runs as BuildKit runs it: without the user's git
// configuration and credential helpers, ssh keys or ssh agent (HOME is
// an empty directory of the build's), with the agent --ssh default
// gives for ssh URLs, and accepting hosts it does not know, as BuildKit
// does without known hosts. Private https repositories take the
// GIT_AUTH_TOKEN secret, as in BuildKit (gitauth.go).

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

// isolate gives g the environment described above, and the
// Authorization header the build's GIT_AUTH_TOKEN or GIT_AUTH_HEADER
// secret gives its host (gitauth.go).
func (r *buildRun) isolate(ctx context.Context, g GitSource) (GitSource, error) {
	r.gitOnce.Do(func() { r.gitEnv, r.gitErr = r.gitEnvironment(ctx) })
	if r.gitErr != nil {
		return g, r.gitErr
	}
	g.env = r.gitEnv
	r.mu.Lock()
	auth, ok := r.gitAuths[g.Remote]
	r.mu.Unlock()
	if ok {
		g.auth = auth
		return g, nil
	}
	g, err := g.WithSecrets(r.req.Secrets, func(msg string) { r.progress.printf("[Warning] %s\n", msg) })
	if err != nil {
		return g, err
	}
	r.mu.Lock()
	r.gitAuths[g.Remote] = g.auth
	r.mu.Unlock()
	return g, nil
}

func (r *buildRun) gitEnvironment(ctx context.Context) ([]string, error) {
	home, err := r.tempDir("git-home-")
	if err != nil {
		return nil, err
	}
	sock := ""
	if a, ok := r.req.SSH["default"]; ok {
		dir, err := r.tempDir("git-ssh-")
		if err != nil {
			return nil, err
		}
		warn := func(err error) { r.progress.printf("[Warning] ssh agent for git: %v\n", err) }
		if r.gitAgent, sock, err = listenSSH(ctx, dir, a, 0o600, 0, 0, false, warn); err != nil {
			return nil, err
		}
	}
	return []string{
		"HOME=" + home, "XDG_CONFIG_HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + filepath.Join(home, "gitconfig"),
		"GIT_CONFIG_PARAMETERS=", "GIT_CONFIG_COUNT=0", // git -c and git config --env of imgtool's caller
		"GIT_ASKPASS=", "SSH_ASKPASS=", "SSH_AUTH_SOCK=" + sock,
		"GIT_SSH_COMMAND=ssh -F none -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
	}, nil
}

// closeGit stops the ssh agent isolate served, if any.
func (r *buildRun) closeGit() {
	if r.gitAgent != nil {
		r.gitAgent.close()
	}
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
	if g, err = s.r.isolate(ctx, g); err != nil {
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
		if g, err = s.r.isolate(ctx, g); err != nil {
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
