package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/opencontainers/go-digest"
)

// source is a tree that COPY and ADD read from: the build context (with
// its .dockerignore) or another stage's root filesystem.
type source struct {
	t      *tree
	ignore *patternmatcher.PatternMatcher // nil: nothing is ignored
	what   string                         // "build context", "stage build", for messages
	// key is the cache key of a stage's or an image's tree ("" for the
	// context, whose files are digested instead).
	key digest.Digest
	// load makes t when it is first needed: a stage or image whose steps
	// were all cached is only unpacked when a step that reads it runs.
	load func(ctx context.Context) (*tree, error)
	mu   sync.Mutex // guards t while load makes it
}

// open makes the source's tree if it is not there yet.
func (s *source) open(ctx context.Context) error {
	// An image's source is shared by the stages that name it, which may
	// open it at once.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t != nil {
		return nil
	}
	t, err := s.load(ctx)
	if err != nil {
		return err
	}
	s.t = t
	return nil
}

// readIgnore reads the ignore file of a build: <Dockerfile>.dockerignore
// beside the Dockerfile when there is one (docker's per-Dockerfile rule),
// else .dockerignore at the context's root. It returns no patterns when
// neither exists.
func readIgnore(contextDir, dockerfilePath string) ([]string, error) {
	var candidates []string
	if dockerfilePath != "" {
		candidates = append(candidates, dockerfilePath+".dockerignore")
	}
	candidates = append(candidates, filepath.Join(contextDir, ".dockerignore"))
	for _, c := range candidates {
		f, err := os.Open(c)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read ignore file: %w", err)
		}
		defer f.Close()
		patterns, err := ignorefile.ReadAll(f)
		if err != nil {
			return nil, fmt.Errorf("read ignore file %s: %w", c, err)
		}
		return patterns, nil
	}
	return nil, nil
}

// newContext opens the build context dir with the ignore patterns.
func newContext(dir string, patterns []string) (*source, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open build context: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open build context: %s is not a directory", dir)
	}
	t, err := newTree(dir)
	if err != nil {
		return nil, fmt.Errorf("open build context: %w", err)
	}
	s := &source{t: t, what: "build context"}
	if len(patterns) > 0 {
		if s.ignore, err = patternmatcher.New(patterns); err != nil {
			return nil, fmt.Errorf("read .dockerignore: %w", err)
		}
	}
	return s, nil
}

// ignored reports whether p (slash-separated, inside the tree) is left out
// of the context. A path is out when it or a parent matches the patterns
// and no later "!" pattern brings it back, as docker decides.
func (s *source) ignored(p string) bool {
	if s.ignore == nil {
		return false
	}
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return false
	}
	m, err := s.ignore.MatchesOrParentMatches(rel)
	return err == nil && m
}

// descend reports whether a walk must look inside an ignored directory:
// only when a "!" pattern may bring back something below it.
func (s *source) descend() bool { return s.ignore != nil && s.ignore.Exclusions() }

// hasMeta reports whether a COPY source holds wildcards.
func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// match expands a COPY source into the paths it names inside the tree
// ("/a/b"), sorted. Wildcards match within one path component, as in
// filepath.Match; ignored paths never match. A source that names nothing
// is an error that says which.
func (s *source) match(src string) ([]string, error) {
	clean := path.Clean("/" + src)
	if !hasMeta(clean) {
		if s.ignored(clean) {
			return nil, s.notFound(src, "it is excluded by .dockerignore")
		}
		if _, err := s.t.resolve(clean); err != nil {
			return nil, s.notFound(src, "no such file or directory")
		}
		return []string{clean}, nil
	}
	paths := []string{"/"}
	for _, comp := range strings.Split(strings.TrimPrefix(clean, "/"), "/") {
		var next []string
		for _, dir := range paths {
			if !hasMeta(comp) {
				next = append(next, path.Join(dir, comp))
				continue
			}
			host, err := s.t.resolve(dir)
			if err != nil {
				continue
			}
			entries, err := os.ReadDir(host)
			if err != nil {
				continue
			}
			for _, e := range entries {
				ok, err := filepath.Match(comp, e.Name())
				if err != nil {
					return nil, fmt.Errorf("source %q: %w", src, err)
				}
				if ok {
					next = append(next, path.Join(dir, e.Name()))
				}
			}
		}
		paths = next
	}
	var out []string
	for _, p := range paths {
		if _, err := s.t.resolve(p); err == nil && !s.ignored(p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, s.notFound(src, "no file matches")
	}
	sort.Strings(out)
	return out, nil
}

func (s *source) notFound(src, why string) error {
	return fmt.Errorf("%q not found in the %s: %s", src, s.what, why)
}
