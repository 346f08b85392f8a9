package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// blobSize returns the size of blob d if repository name may serve it.
func (g *Registry) blobSize(ctx context.Context, name string, d digest.Digest) (int64, error) {
	if _, err := g.driver.Stat(ctx, layerLinkPath(name, d)); err != nil {
		if isNotFound(err) {
			return 0, newError(errBlobUnknown, "blob %s unknown to repository %s", d, name)
		}
		return 0, fmt.Errorf("stat blob link %s in %s: %w", d, name, err)
	}
	return g.globalBlobSize(ctx, d)
}

// globalBlobSize returns the size of blob d in the shared blob store.
func (g *Registry) globalBlobSize(ctx context.Context, d digest.Digest) (int64, error) {
	fi, err := g.driver.Stat(ctx, blobDataPath(d))
	if err != nil {
		if isNotFound(err) {
			return 0, newError(errBlobUnknown, "blob %s unknown", d)
		}
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return fi.Size(), nil
}

// linkBlob makes blob d, already in the blob store, part of repository name.
func (g *Registry) linkBlob(ctx context.Context, name string, d digest.Digest) error {
	if err := g.driver.PutContent(ctx, layerLinkPath(name, d), []byte(d)); err != nil {
		return fmt.Errorf("link blob %s into %s: %w", d, name, err)
	}
	return nil
}

func (g *Registry) getBlob(w http.ResponseWriter, r *http.Request, rt route) error {
	d, err := parseDigest(rt.ref)
	if err != nil {
		return newError(errDigestInvalid, "blob reference %q: %v", rt.ref, err)
	}
	var size int64
	if r.Method == http.MethodHead {
		size, err = g.headBlob(r.Context(), rt.name, d)
	} else {
		size, err = g.blobSize(r.Context(), rt.name, d)
	}
	if err != nil {
		return err
	}
	start, end, partial, err := parseRange(r.Header.Get("Range"), size)
	if err != nil {
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		return err
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Accept-Ranges", "bytes")
	h.Set("Etag", `"`+d.String()+`"`)
	h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, size))
		status = http.StatusPartialContent
	}
	if r.Method == http.MethodHead || end == start {
		w.WriteHeader(status)
		return nil
	}
	rc, err := g.driver.Reader(r.Context(), blobDataPath(d), start)
	if err != nil {
		return fmt.Errorf("read blob %s: %w", d, err)
	}
	defer rc.Close()
	w.WriteHeader(status)
	// The status is sent: a failure from here on can only cut the body short,
	// which the client detects by its length and digest.
	_, _ = io.CopyN(w, rc, end-start)
	return nil
}

// parseRange reads a single "bytes=" range of a blob of size bytes, as the
// spec asks registries to support; it returns the half-open [start, end).
func parseRange(header string, size int64) (start, end int64, partial bool, err error) {
	if header == "" {
		return 0, size, false, nil
	}
	bad := newError(errRangeInvalid, "range %q not satisfiable for a blob of %d bytes", header, size)
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, false, bad
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, false, bad
	}
	if first == "" { // suffix range: the last n bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false, bad
		}
		return max(size-n, 0), size, true, nil
	}
	start, err = strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 || start >= size {
		return 0, 0, false, bad
	}
	end = size
	if last != "" {
		l, err := strconv.ParseInt(last, 10, 64)
		if err != nil || l < start {
			return 0, 0, false, bad
		}
		end = min(l+1, size)
	}
	return start, end, true, nil
}

func (g *Registry) deleteBlob(w http.ResponseWriter, r *http.Request, rt route) error {
	d, err := parseDigest(rt.ref)
	if err != nil {
		return newError(errDigestInvalid, "blob reference %q: %v", rt.ref, err)
	}
	if _, err := g.blobSize(r.Context(), rt.name, d); err != nil {
		return err
	}
	// Only the repository's link goes: other repositories may share the
	// content, which garbage collection reclaims once nothing links it.
	if err := g.driver.Delete(r.Context(), layerLinkPath(rt.name, d)); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete blob link %s in %s: %w", d, rt.name, err)
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
