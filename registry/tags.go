package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// tags returns the sorted tags of repository name.
func (g *Registry) tags(ctx context.Context, name string) ([]string, error) {
	entries, err := g.driver.List(ctx, tagsPath(name))
	if err != nil {
		if isNotFound(err) {
			return []string{}, nil
		}
		return nil, fmt.Errorf("list tags of %s: %w", name, err)
	}
	tags := make([]string, 0, len(entries))
	for _, e := range entries {
		tags = append(tags, path.Base(e))
	}
	sort.Strings(tags)
	return tags, nil
}

// repoExists lists rather than stats the repository: on S3, Stat of a
// "directory" is a key-prefix match, under which "team/ap" would exist
// because "team/app" does.
func (g *Registry) repoExists(ctx context.Context, name string) (bool, error) {
	entries, err := g.driver.List(ctx, repoPath(name))
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("stat repository %s: %w", name, err)
	}
	return slices.ContainsFunc(entries, func(e string) bool { return holdsContent(path.Base(e)) }), nil
}

// holdsContent tells whether a repository's "_" entry named base makes it
// a repository clients see: links to its layers or manifests. A name that
// holds only _uploads has a push in progress, or one that failed (a wrong
// digest, a cancelled session), and must not appear in the catalog or
// answer a tags list as if the push had happened.
func holdsContent(base string) bool { return base == "_manifests" || base == "_layers" }

// holdsUploads tells whether a repository's "_" entry holds upload sessions.
func holdsUploads(base string) bool { return base == "_uploads" }

func (g *Registry) listTags(w http.ResponseWriter, r *http.Request, rt route) error {
	ctx := r.Context()
	tags, err := g.tags(ctx, rt.name)
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		ok, err := g.repoExists(ctx, rt.name)
		if err != nil {
			return err
		}
		if !ok {
			return newError(errNameUnknown, "repository %s not found", rt.name)
		}
	}
	page, err := paginate(w, r, tags)
	if err != nil {
		return err
	}
	return writeJSON(w, r, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.name, page})
}

// paginate cuts sorted items by the n and last parameters and, when more
// remain, sets the Link header to the next page.
func paginate(w http.ResponseWriter, r *http.Request, items []string) ([]string, error) {
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		i := sort.SearchStrings(items, last)
		if i < len(items) && items[i] == last {
			i++
		}
		items = items[i:]
	}
	if !q.Has("n") {
		return items, nil
	}
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n < 0 {
		return nil, newError(errPaginationInvalid, "n=%q is not a count", q.Get("n"))
	}
	if n >= len(items) {
		return items, nil
	}
	page := items[:n]
	if n > 0 {
		next := url.Values{"n": {strconv.Itoa(n)}, "last": {page[n-1]}}
		w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, next.Encode()))
	}
	return page, nil
}

func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(raw)
	}
	return nil
}

// maxCatalogDepth bounds the walk for repositories: names have at most
// as many components as fit in maxNameLength.
const maxCatalogDepth = maxNameLength / 2

func (g *Registry) getCatalog(w http.ResponseWriter, r *http.Request, _ route) error {
	repos := []string{}
	if err := g.collectRepos(r.Context(), repositoriesPath(), "", 0, holdsContent, &repos); err != nil {
		return err
	}
	sort.Strings(repos)
	page, err := paginate(w, r, repos)
	if err != nil {
		return err
	}
	return writeJSON(w, r, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{page})
}

// collectRepos finds repositories under dir: directories holding one of
// the layout's "_" entries (which no name component can start with) that
// want accepts.
func (g *Registry) collectRepos(ctx context.Context, dir, prefix string, depth int, want func(base string) bool, out *[]string) error {
	if depth > maxCatalogDepth {
		return nil
	}
	entries, err := g.driver.List(ctx, dir)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("list repositories: %w", err)
	}
	isRepo := false
	for _, e := range entries {
		base := path.Base(e)
		if strings.HasPrefix(base, "_") {
			isRepo = isRepo || want(base)
			continue
		}
		if err := g.collectRepos(ctx, e, path.Join(prefix, base), depth+1, want, out); err != nil {
			return err
		}
	}
	if isRepo && prefix != "" {
		*out = append(*out, prefix)
	}
	return nil
}
