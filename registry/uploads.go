package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

func uploadLocation(name, id string) string { return "/v2/" + name + "/blobs/uploads/" + id }

func blobLocation(name string, d digest.Digest) string { return "/v2/" + name + "/blobs/" + d.String() }

// startUpload answers POST /v2/<name>/blobs/uploads/: a cross-repository
// mount, a whole blob in one request (?digest=), or a new session.
func (g *Registry) startUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	ctx := r.Context()
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		mounted, err := g.mount(ctx, rt.name, m, q.Get("from"))
		if err != nil {
			return err
		}
		if mounted != "" {
			w.Header().Set("Location", blobLocation(rt.name, mounted))
			w.Header().Set("Docker-Content-Digest", mounted.String())
			w.WriteHeader(http.StatusCreated)
			return nil
		}
		// Not mountable: the spec says to fall back to a new session.
	}
	alg := digest.Canonical
	if a := q.Get("digest-algorithm"); a != "" {
		alg = digest.Algorithm(a)
		if !supportedAlgorithm(alg) {
			return newError(errDigestInvalid, "digest algorithm %q is not supported (sha256 or sha512)", a)
		}
	}
	var want digest.Digest
	if d := q.Get("digest"); d != "" {
		var err error
		if want, err = parseDigest(d); err != nil {
			return newError(errDigestInvalid, "digest %q: %v", d, err)
		}
		alg = want.Algorithm()
	}
	u, err := g.createUpload(ctx, rt.name, alg)
	if err != nil {
		return err
	}
	if want != "" {
		fw, err := g.driver.Writer(ctx, uploadDataPath(rt.name, u.id), true)
		if err != nil {
			return fmt.Errorf("open upload %s: %w", u.id, err)
		}
		if err := g.finish(w, r, u, fw, want); err != nil {
			// The client never learnt this session's location: nothing
			// could continue it.
			return errors.Join(err, g.abortUpload(context.WithoutCancel(ctx), rt.name, u.id))
		}
		return nil
	}
	w.Header().Set("Location", uploadLocation(rt.name, u.id))
	w.Header().Set("Range", "0-0")
	w.Header().Set("Docker-Upload-UUID", u.id)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// mount links blob m into repository name when repository from (or, when
// from is empty, any repository) holds it; it returns "" when it cannot.
func (g *Registry) mount(ctx context.Context, name, m, from string) (digest.Digest, error) {
	d, err := parseDigest(m)
	if err != nil {
		return "", newError(errDigestInvalid, "mount %q: %v", m, err)
	}
	written := time.Now()
	if from != "" {
		if !validName(from) {
			return "", newError(errNameInvalid, "invalid repository name %q in from", from)
		}
		_, err = g.blobSize(ctx, from, d)
	} else {
		_, err = g.globalBlobSize(ctx, d)
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if err := g.linkBlob(ctx, name, d); err != nil {
		return "", err
	}
	if err := g.guardLink(ctx, name, d, written, nil); errors.As(err, &ae) {
		return "", nil // collected meanwhile: the client uploads it instead
	} else if err != nil {
		return "", err
	}
	return d, nil
}

// writeRange answers the upload's progress, as PATCH, status and 416 do.
func writeRange(w http.ResponseWriter, name, id string, size int64) {
	w.Header().Set("Location", uploadLocation(name, id))
	w.Header().Set("Range", "0-"+strconv.FormatInt(max(size-1, 0), 10))
	w.Header().Set("Docker-Upload-UUID", id)
	w.Header().Set("Content-Length", "0")
}

func (g *Registry) uploadStatus(w http.ResponseWriter, r *http.Request, rt route) error {
	u, fw, err := g.openUpload(r.Context(), rt.name, rt.ref)
	if err != nil {
		return err
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("upload %s: %w", u.id, err)
	}
	writeRange(w, rt.name, rt.ref, u.state.Offset)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *Registry) patchUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	u, fw, err := g.openUpload(r.Context(), rt.name, rt.ref)
	if err != nil {
		return err
	}
	if err := g.appendBody(w, r, u, fw, false); err != nil {
		return err
	}
	writeRange(w, rt.name, rt.ref, u.state.Offset)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (g *Registry) finishUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	d := r.URL.Query().Get("digest")
	want, err := parseDigest(d)
	if err != nil {
		return newError(errDigestInvalid, "upload needs ?digest= with a sha256 or sha512 digest, got %q: %v", d, err)
	}
	u, fw, err := g.openUpload(r.Context(), rt.name, rt.ref)
	if err != nil {
		return err
	}
	return g.finish(w, r, u, fw, want)
}

// finish appends the request body, verifies the upload against want and,
// only when it matches, moves it into the blob store and links it.
func (g *Registry) finish(w http.ResponseWriter, r *http.Request, u *upload, fw storagedriver.FileWriter, want digest.Digest) error {
	ctx := r.Context()
	if err := g.appendBody(w, r, u, fw, true); err != nil {
		return err
	}
	got, err := g.digestOf(ctx, u, want.Algorithm())
	if err != nil {
		return err
	}
	if got != want {
		if err := g.deleteUpload(ctx, u.name, u.id); err != nil {
			return err
		}
		return newError(errDigestInvalid, "content has digest %s, not %s", got, want)
	}
	written := time.Now()
	store := func() error { return g.driver.Move(ctx, uploadDataPath(u.name, u.id), blobDataPath(want)) }
	restore := store // the upload's copy is there until it is moved
	if _, err := g.globalBlobSize(ctx, want); err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			return err
		}
		// A rename on a filesystem; on S3 a copy (atomic at the
		// destination) and a delete: either way the blob appears whole or
		// not at all, and two replicas finishing the same content at once
		// both write the same bytes.
		if err := store(); err != nil {
			return fmt.Errorf("store blob %s: %w", want, err)
		}
		restore = nil
	}
	if err := g.linkBlob(ctx, u.name, want); err != nil {
		return err
	}
	if err := g.guardLink(ctx, u.name, want, written, restore); err != nil {
		return err
	}
	if err := g.deleteUpload(ctx, u.name, u.id); err != nil {
		return err
	}
	w.Header().Set("Location", blobLocation(u.name, want))
	w.Header().Set("Docker-Content-Digest", want.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// appendBody appends the request body to the upload's writer fw after
// checking a Content-Range against the upload's end, then closes fw
// (committing it when the upload is complete) and saves the state. Bytes
// received before a broken connection are kept, so the client can resume
// after them.
func (g *Registry) appendBody(w http.ResponseWriter, r *http.Request, u *upload, fw storagedriver.FileWriter, commit bool) error {
	ctx := context.WithoutCancel(r.Context()) // what arrived is kept even if the client left
	size := u.state.Offset
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, end, ok := parseContentRange(cr)
		if !ok || start != size || (r.ContentLength >= 0 && r.ContentLength != end-start+1) {
			fw.Close()
			writeRange(w, u.name, u.id, size)
			return newError(errRangeInvalid, "chunk %q does not continue the upload at offset %d", cr, size)
		}
	}
	var n int64
	var copyErr error
	if r.Body != nil && r.ContentLength != 0 {
		n, copyErr = streamBody(fw, u.hash, r.Body)
	}
	var err error
	if commit && copyErr == nil {
		err = fw.Commit(ctx)
	}
	if cerr := fw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append to upload %s: %w", u.id, err)
	}
	if n > 0 {
		u.state.Offset = size + n
		if err := g.saveUpload(ctx, u); err != nil {
			return err
		}
	}
	if copyErr != nil {
		return newError(errBlobUploadInvalid, "upload %s: reading body: %v", u.id, copyErr)
	}
	return nil
}

// parseContentRange reads "<start>-<end>" (the spec's form; "bytes " is
// tolerated for clients that send the RFC 9110 spelling).
func parseContentRange(s string) (start, end int64, ok bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "bytes ")
	s, _, _ = strings.Cut(s, "/")
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	return start, end, err1 == nil && err2 == nil && start >= 0 && end >= start
}

func (g *Registry) cancelUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	if _, err := g.loadState(r.Context(), rt.name, rt.ref); err != nil {
		return err
	}
	if err := g.abortUpload(r.Context(), rt.name, rt.ref); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
