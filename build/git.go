package build

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/dfgitutil"
	"golang.org/x/sys/unix"
)

// GitSource is a git repository a build reads, as docker writes it:
// URL#REF:SUBDIR, or with BuildKit's ?ref=, ?tag=, ?branch=, ?subdir=,
// ?checksum=, ?keep-git-dir=, ?submodules=, ?mtime= query.
type GitSource struct {
	Remote   string // the URL git fetches, without fragment or query
	Ref      string // branch, tag, full commit id, or "" for the remote's HEAD
	Subdir   string // inside the repository ("" : its root)
	Checksum string // a prefix of the commit (or annotated tag) the ref must name
	// KeepGitDir keeps .git in the checkout; Submodules (default on)
	// checks them out too; CommitMTime gives every file the commit's
	// time rather than the checkout's (?mtime=commit).
	KeepGitDir  bool
	Submodules  bool
	CommitMTime bool
	// env is added to git's environment (gitadd.go keeps a Dockerfile's
	// sources away from the user's git and ssh credentials); auth is the
	// Authorization header build secrets give it (gitauth.go).
	env  []string
	auth *gitAuth
}

// ParseGitSource reads a git URL with dfgitutil, the parser docker's
// Dockerfile frontend uses for ADD and build contexts: ok is false for
// what is not a git URL. Bare "github.com/..." counts only with
// bareGitHub (docker takes it for a context, not for ADD); file:// only
// with local (a Dockerfile must not read the build host's repositories;
// the person typing the command may).
func ParseGitSource(s string, bareGitHub, local bool) (GitSource, bool, error) {
	if local && strings.HasPrefix(s, "file://") {
		return parseFileGit(s)
	}
	g, isGit, err := dfgitutil.ParseGitRef(s)
	if err != nil {
		if isGit {
			return GitSource{}, true, fmt.Errorf("git source %s: %w", redact(s), err)
		}
		return GitSource{}, false, nil
	}
	if g.IndistinguishableFromLocal && !bareGitHub {
		return GitSource{}, false, nil
	}
	out := GitSource{Remote: g.Remote, Ref: g.Ref, Subdir: g.SubDir, Checksum: g.Checksum, Submodules: true, CommitMTime: g.MTime == "commit"}
	if g.IndistinguishableFromLocal {
		out.Remote = "https://" + g.Remote
	}
	if g.KeepGitDir != nil {
		out.KeepGitDir = *g.KeepGitDir
	}
	if g.Submodules != nil {
		out.Submodules = *g.Submodules
	}
	if g.FetchByCommit {
		return GitSource{}, true, fmt.Errorf("git source %s: fetch-by-commit is not supported", redact(s))
	}
	return out, true, nil
}

// parseFileGit reads file:///repo#REF:SUBDIR, with the fragment rules
// of dfgitutil (which knows no file://).
func parseFileGit(s string) (GitSource, bool, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host != "" || u.Path == "" || u.RawQuery != "" {
		return GitSource{}, true, fmt.Errorf("git source %s: want file:///PATH[#REF[:SUBDIR]]", s)
	}
	ref, subdir, _ := strings.Cut(u.Fragment, ":")
	u.Fragment, u.RawFragment = "", ""
	return GitSource{Remote: u.String(), Ref: ref, Subdir: strings.TrimPrefix(path.Join("/", subdir), "/"), Submodules: true}, true, nil
}

// redact hides a password in a URL for messages.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}

var hexRE = regexp.MustCompile(`^[0-9a-fA-F]+$`)

// isCommitID reports whether ref is a full sha1 or sha256 commit id.
func isCommitID(ref string) bool {
	return (len(ref) == 40 || len(ref) == 64) && hexRE.MatchString(ref)
}

// gitCommit is what a ref resolves to: the commit (an annotated tag
// peeled), the object the ref names (the tag itself for an annotated
// tag), and the full ref to fetch.
type gitCommit struct {
	commit, object, ref string
}

// resolve finds the commit g's ref names, with ls-remote (no fetch), and
// checks --checksum against it, as BuildKit does: a branch wins over a
// tag of the same name.
func (g GitSource) resolve(ctx context.Context) (gitCommit, error) {
	if g.Checksum != "" && !hexRE.MatchString(g.Checksum) {
		return gitCommit{}, fmt.Errorf("git source %s: checksum %q is not a commit id", redact(g.Remote), g.Checksum)
	}
	if isCommitID(g.Ref) {
		if !strings.HasPrefix(g.Ref, strings.ToLower(g.Checksum)) {
			return gitCommit{}, fmt.Errorf("git source %s: the checksum %s does not match commit %s", redact(g.Remote), g.Checksum, g.Ref)
		}
		ref := strings.ToLower(g.Ref)
		return gitCommit{commit: ref, object: ref, ref: ref}, nil
	}
	ref := g.Ref
	if ref == "" {
		ref = "HEAD"
	}
	out, err := g.git(ctx, "", "ls-remote", "--", g.Remote, ref, ref+"^{}")
	if err != nil {
		return gitCommit{}, fmt.Errorf("git source %s: %w", redact(g.Remote), err)
	}
	var (
		partial = "refs/" + strings.TrimPrefix(ref, "refs/")
		head    = "refs/heads/" + strings.TrimPrefix(ref, "refs/heads/")
		tag     = "refs/tags/" + strings.TrimPrefix(ref, "refs/tags/")
	)
	found := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		sha, name, ok := strings.Cut(line, "\t")
		if ok && isCommitID(sha) {
			found[name] = strings.ToLower(sha)
		}
	}
	var c gitCommit
	for _, name := range []string{partial, head} {
		if sha := found[name]; sha != "" {
			c = gitCommit{commit: sha, object: sha, ref: name}
			break
		}
	}
	if ref == "HEAD" {
		c = gitCommit{commit: found["HEAD"], object: found["HEAD"], ref: "HEAD"}
	}
	if c.commit == "" && found[tag] != "" {
		c = gitCommit{commit: found[tag], object: found[tag], ref: tag}
	}
	if peeled := found[c.ref+"^{}"]; peeled != "" {
		c.commit = peeled // an annotated tag: its commit
	}
	if c.commit == "" {
		return gitCommit{}, fmt.Errorf("git source %s: no branch or tag %q (give a branch, a tag or a full commit id)", redact(g.Remote), ref)
	}
	if g.Checksum != "" && !strings.HasPrefix(c.commit, strings.ToLower(g.Checksum)) && !strings.HasPrefix(c.object, strings.ToLower(g.Checksum)) {
		return gitCommit{}, fmt.Errorf("git source %s: %s is commit %s, not the checksum %s", redact(g.Remote), ref, c.commit, g.Checksum)
	}
	return c, nil
}

// fetch checks commit c of g out into dir (which it makes), submodules
// too unless turned off, and returns the directory the source names (dir
// or its subdirectory). Files get git's modes (0644 or 0755, directories
// 0755), whatever the umask; .git goes unless KeepGitDir.
func (g GitSource) fetch(ctx context.Context, c gitCommit, dir string) (string, error) {
	if err := g.checkout(ctx, c, dir); err != nil {
		return "", fmt.Errorf("git source %s: %w", redact(g.Remote), err)
	}
	var mtime time.Time
	if g.CommitMTime {
		out, err := g.git(ctx, dir, "show", "-s", "--format=%ct", c.commit)
		if err != nil {
			return "", err
		}
		var secs int64
		if _, err := fmt.Sscan(string(out), &secs); err != nil {
			return "", fmt.Errorf("commit time of %s: %q", c.commit, out)
		}
		mtime = time.Unix(secs, 0)
	}
	if err := normalizeCheckout(dir, g.KeepGitDir, mtime); err != nil {
		return "", fmt.Errorf("git source %s: %w", redact(g.Remote), err)
	}
	if g.Subdir == "" {
		return dir, nil
	}
	t, err := newTree(dir)
	if err != nil {
		return "", err
	}
	sub, err := t.resolve(g.Subdir)
	if err != nil || !isDir(sub) {
		return "", fmt.Errorf("git source %s: %s is not a directory at %s", redact(g.Remote), g.Subdir, c.commit)
	}
	return sub, nil
}

func (g GitSource) checkout(ctx context.Context, c gitCommit, dir string) error {
	if _, err := g.git(ctx, "", "-c", "init.defaultBranch=imgtool", "init", "-q", "--", dir); err != nil {
		return err
	}
	if _, err := g.git(ctx, dir, "remote", "add", "origin", "--", g.Remote); err != nil {
		return err
	}
	// A shallow fetch of the ref; of the commit itself if the ref moved
	// since ls-remote; the same deep for servers without shallow support
	// (dumb HTTP); at last every branch and tag, for a commit id the
	// server will not hand out by itself.
	attempts := [][]string{
		{"--depth=1", "origin", "--", c.ref},
		{"--depth=1", "origin", "--", c.object},
		{"origin", "--", c.ref},
		{"origin", "--", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"},
	}
	var ferr error
	fetched := false
	for _, a := range attempts {
		if _, err := g.git(ctx, dir, append([]string{"fetch", "-q", "--no-tags"}, a...)...); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			ferr = cmp.Or(ferr, err)
			continue
		}
		if _, err := g.git(ctx, dir, "cat-file", "-e", c.commit+"^{commit}"); err == nil {
			fetched = true
			break
		}
	}
	if !fetched {
		if ferr != nil {
			return ferr
		}
		return fmt.Errorf("%s no longer holds commit %s (it moved while fetching?): try again", c.ref, c.commit)
	}
	if _, err := g.git(ctx, dir, "-c", "advice.detachedHead=false", "checkout", "-q", c.commit); err != nil {
		return err
	}
	if !g.Submodules {
		return nil
	}
	if _, err := os.Lstat(filepath.Join(dir, ".gitmodules")); err != nil {
		return nil
	}
	if _, err := g.git(ctx, dir, "submodule", "update", "-q", "--init", "--recursive", "--depth=1"); err != nil {
		if _, err := g.git(ctx, dir, "submodule", "update", "-q", "--init", "--recursive"); err != nil {
			return err
		}
	}
	return nil
}

// normalizeCheckout gives every file git's modes, 0644 or 0755 (the
// checkout's depend on the umask), and directories 0755, sets mtime when
// it is not zero, and removes .git (and submodules' .git files) unless
// keep: a repository cannot track a path named .git, so any is git's.
func normalizeCheckout(dir string, keep bool, mtime time.Time) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".git" && p != dir {
			if keep && d.IsDir() {
				return fs.SkipDir
			}
			if keep {
				return nil
			}
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			err = os.Chmod(p, 0o755)
		case d.Type().IsRegular():
			fi, ferr := d.Info()
			if ferr != nil {
				return ferr
			}
			mode := os.FileMode(0o644)
			if fi.Mode()&0o111 != 0 {
				mode = 0o755
			}
			err = os.Chmod(p, mode)
		}
		if err == nil && !mtime.IsZero() {
			ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
			err = unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
		return err
	})
}

// Checkout resolves g's ref and checks it out into dir (which it makes),
// for a build context that is a git URL; it returns the directory the
// source names and the commit.
func (g GitSource) Checkout(ctx context.Context, dir string) (string, string, error) {
	c, err := g.resolve(ctx)
	if err != nil {
		return "", "", err
	}
	root, err := g.fetch(ctx, c, dir)
	return root, c.commit, err
}
