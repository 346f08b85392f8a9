package registry

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// client sends requests to a Registry in process.
type client struct {
	t testing.TB
	h http.Handler
}

func newClient(t testing.TB, drv storagedriver.StorageDriver, opts Options) *client {
	return &client{t: t, h: New(drv, opts)}
}

func (c *client) do(method, target string, body []byte, hdr ...string) *httptest.ResponseRecorder {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, req)
	return w
}

func (c *client) want(w *httptest.ResponseRecorder, status int, code string) {
	c.t.Helper()
	if w.Code != status {
		c.t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	if code != "" && !strings.Contains(w.Body.String(), `"code":"`+code+`"`) {
		c.t.Fatalf("body %s does not carry %s", w.Body, code)
	}
}

func (c *client) pushBlob(name string, data []byte) digest.Digest {
	c.t.Helper()
	d := digest.FromBytes(data)
	c.want(c.do("POST", "/v2/"+name+"/blobs/uploads/?digest="+d.String(), data), http.StatusCreated, "")
	return d
}

func (c *client) pushImage(name, tag string, subject *ocispec.Descriptor, artifactType string) (digest.Digest, []byte) {
	c.t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := []byte("layer of " + name + tag)
	m := ocispec.Manifest{
		Versioned:    specsVersioned,
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: c.pushBlob(name, cfg), Size: int64(len(cfg))},
		Layers:       []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: c.pushBlob(name, layer), Size: int64(len(layer))}},
		Subject:      subject,
	}
	raw, _ := json.Marshal(m)
	w := c.do("PUT", "/v2/"+name+"/manifests/"+tag, raw, "Content-Type", ocispec.MediaTypeImageManifest)
	c.want(w, http.StatusCreated, "")
	return digest.Digest(w.Header().Get("Docker-Content-Digest")), raw
}

func TestChunkedUploadContinuesOnAnotherReplica(t *testing.T) {
	drv := inmemory.New()
	a, b := newClient(t, drv, Options{}), newClient(t, drv, Options{})
	data := bytes.Repeat([]byte("0123456789"), 1000)
	w := a.do("POST", "/v2/r/blobs/uploads/", nil)
	a.want(w, http.StatusAccepted, "")
	loc := w.Header().Get("Location")
	a.want(a.do("PATCH", loc, data[:4000], "Content-Range", "0-3999"), http.StatusAccepted, "")
	// Out of order: 416 and nothing appended.
	w = b.do("PATCH", loc, data[5000:6000], "Content-Range", "5000-5999")
	b.want(w, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID")
	w = b.do("GET", loc, nil)
	b.want(w, http.StatusNoContent, "")
	if got := w.Header().Get("Range"); got != "0-3999" {
		t.Fatalf("Range %q after 4000 bytes", got)
	}
	b.want(b.do("PATCH", loc, data[4000:], "Content-Range", fmt.Sprintf("4000-%d", len(data)-1)), http.StatusAccepted, "")
	d := digest.FromBytes(data)
	a.want(a.do("PUT", loc+"?digest="+d.String(), nil), http.StatusCreated, "")
	w = b.do("GET", "/v2/r/blobs/"+d.String(), nil)
	b.want(w, http.StatusOK, "")
	if !bytes.Equal(w.Body.Bytes(), data) {
		t.Fatal("blob content differs")
	}
	// The session is gone once finished.
	a.want(a.do("GET", loc, nil), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
}

func TestUploadStateBehindDataIsCaughtUp(t *testing.T) {
	drv := inmemory.New()
	c := newClient(t, drv, Options{})
	w := c.do("POST", "/v2/r/blobs/uploads/", nil)
	loc := w.Header().Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	c.want(c.do("PATCH", loc, []byte("hello ")), http.StatusAccepted, "")
	// A crash after appending but before saving the state: the data
	// file is ahead of the state.
	ctx := context.Background()
	fw, err := drv.Writer(ctx, uploadDataPath("r", id), true)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte("world"))
	fw.Close()
	w = c.do("GET", loc, nil)
	if got := w.Header().Get("Range"); got != "0-10" {
		t.Fatalf("Range %q, want 0-10", got)
	}
	d := digest.FromString("hello world!")
	c.want(c.do("PUT", loc+"?digest="+d.String(), []byte("!")), http.StatusCreated, "")
}

func TestDigestInvalidStoresNothing(t *testing.T) {
	drv := inmemory.New()
	c := newClient(t, drv, Options{})
	wrong := digest.FromString("something else")
	c.want(c.do("POST", "/v2/r/blobs/uploads/?digest="+wrong.String(), []byte("content")), http.StatusBadRequest, "DIGEST_INVALID")
	c.want(c.do("HEAD", "/v2/r/blobs/"+wrong.String(), nil), http.StatusNotFound, "")
	c.want(c.do("HEAD", "/v2/r/blobs/"+digest.FromString("content").String(), nil), http.StatusNotFound, "")
	if _, err := drv.Stat(context.Background(), layoutRoot+"/blobs"); err == nil {
		t.Error("a blob was stored")
	}
	if l, _ := drv.List(context.Background(), repoPath("r")+"/_uploads"); len(l) != 0 {
		t.Errorf("uploads left behind: %v", l)
	}
	// Manifests too.
	c.want(c.do("PUT", "/v2/r/manifests/"+wrong.String(), []byte(`{"schemaVersion":2}`)), http.StatusBadRequest, "DIGEST_INVALID")
	// A monolithic PUT with the wrong digest, and a cancelled session.
	loc := c.do("POST", "/v2/r/blobs/uploads/", nil).Header().Get("Location")
	c.want(c.do("PUT", loc+"?digest="+wrong.String(), []byte("content")), http.StatusBadRequest, "DIGEST_INVALID")
	loc = c.do("POST", "/v2/r/blobs/uploads/", nil).Header().Get("Location")
	c.want(c.do("DELETE", loc, nil), http.StatusNoContent, "")

	// None of that made the repository appear.
	c.want(c.do("GET", "/v2/r/tags/list", nil), http.StatusNotFound, "NAME_UNKNOWN")
	if got := c.do("GET", "/v2/_catalog", nil).Body.String(); strings.Contains(got, `"r"`) {
		t.Errorf("catalog lists the repository of failed pushes: %s", got)
	}
	// A push that succeeds does.
	good := digest.FromString("content")
	c.want(c.do("POST", "/v2/r/blobs/uploads/?digest="+good.String(), []byte("content")), http.StatusCreated, "")
	c.want(c.do("GET", "/v2/r/tags/list", nil), http.StatusOK, "")
	if got := c.do("GET", "/v2/_catalog", nil).Body.String(); !strings.Contains(got, `"r"`) {
		t.Errorf("catalog misses the repository of a pushed blob: %s", got)
	}
}

func TestSha512EndToEnd(t *testing.T) {
	c := newClient(t, inmemory.New(), Options{})
	data := []byte("sha512 content")
	sum := sha512.Sum512(data)
	d := digest.NewDigestFromBytes(digest.SHA512, sum[:])
	w := c.do("POST", "/v2/r/blobs/uploads/", nil)
	c.want(c.do("PUT", w.Header().Get("Location")+"?digest="+d.String(), data), http.StatusCreated, "")
	w = c.do("GET", "/v2/r/blobs/"+d.String(), nil)
	c.want(w, http.StatusOK, "")
	if w.Header().Get("Docker-Content-Digest") != d.String() {
		t.Errorf("served as %s", w.Header().Get("Docker-Content-Digest"))
	}
}

// sha384 is known to go-digest but registered by no OCI spec: every
// endpoint refuses it alike.
func TestSha384Refused(t *testing.T) {
	c := newClient(t, inmemory.New(), Options{})
	d := digest.SHA384.FromString("x").String()
	c.want(c.do("POST", "/v2/r/blobs/uploads/?digest-algorithm=sha384", nil), http.StatusBadRequest, "DIGEST_INVALID")
	c.want(c.do("POST", "/v2/r/blobs/uploads/?digest="+d, []byte("x")), http.StatusBadRequest, "DIGEST_INVALID")
	loc := c.do("POST", "/v2/r/blobs/uploads/", nil).Header().Get("Location")
	c.want(c.do("PUT", loc+"?digest="+d, []byte("x")), http.StatusBadRequest, "DIGEST_INVALID")
	c.want(c.do("GET", "/v2/r/blobs/"+d, nil), http.StatusBadRequest, "DIGEST_INVALID")
	c.want(c.do("GET", "/v2/r/manifests/"+d, nil), http.StatusBadRequest, "DIGEST_INVALID")
	c.want(c.do("PUT", "/v2/r/manifests/"+d, []byte(`{}`)), http.StatusBadRequest, "DIGEST_INVALID")
}

func TestManifestRules(t *testing.T) {
	c := newClient(t, inmemory.New(), Options{})
	missing := digest.FromString("never pushed")
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":3},"layers":[]}`,
		ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, missing)
	c.want(c.do("PUT", "/v2/r/manifests/1", []byte(m), "Content-Type", ocispec.MediaTypeImageManifest), http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
	sparse := newClient(t, inmemory.New(), Options{AllowSparse: true})
	sparse.want(sparse.do("PUT", "/v2/r/manifests/1", []byte(m), "Content-Type", ocispec.MediaTypeImageManifest), http.StatusCreated, "")
	// A generic Content-Type gets the media type the content names.
	sparse.want(sparse.do("PUT", "/v2/r/manifests/2", []byte(m), "Content-Type", "application/json"), http.StatusCreated, "")
	if ct := sparse.do("HEAD", "/v2/r/manifests/2", nil).Header().Get("Content-Type"); ct != ocispec.MediaTypeImageManifest {
		t.Errorf("served as %q", ct)
	}
	for _, tc := range []struct {
		body, ct, code string
	}{
		{"not json", ocispec.MediaTypeImageManifest, "MANIFEST_INVALID"},
		{`{"schemaVersion":1}`, "", "MANIFEST_INVALID"},
		{m, ocispec.MediaTypeImageIndex, "MANIFEST_INVALID"},
		{`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:../../etc","size":1}}`, "", "MANIFEST_INVALID"},
	} {
		c.want(c.do("PUT", "/v2/r/manifests/t", []byte(tc.body), "Content-Type", tc.ct), http.StatusBadRequest, tc.code)
	}
	big := bytes.Repeat([]byte(" "), 4<<20+1)
	c.want(c.do("PUT", "/v2/r/manifests/t", big), http.StatusRequestEntityTooLarge, "SIZE_INVALID")
	c.want(c.do("GET", "/v2/r/manifests/t", nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
}

func TestBadNamesAndRanges(t *testing.T) {
	c := newClient(t, inmemory.New(), Options{})
	d := c.pushBlob("ok", []byte("0123456789"))
	for _, p := range []string{"/v2/UPPER/tags/list", "/v2/a/../b/tags/list", "/v2/_x/tags/list", "/v2/a//b/tags/list", "/v2/a/-b/manifests/x", "/v2/" + strings.Repeat("a", 256) + "/tags/list"} {
		c.want(c.do("GET", p, nil), http.StatusBadRequest, "NAME_INVALID")
	}
	c.want(c.do("GET", "/v2/ok/manifests/bad..tag!", nil), http.StatusBadRequest, "MANIFEST_INVALID")
	c.want(c.do("GET", "/v2/ok/blobs/sha256:xyz", nil), http.StatusBadRequest, "DIGEST_INVALID")
	for _, tc := range []struct {
		rng, body, contentRange string
		status                  int
	}{
		{"bytes=2-4", "234", "bytes 2-4/10", http.StatusPartialContent},
		{"bytes=7-", "789", "bytes 7-9/10", http.StatusPartialContent},
		{"bytes=-2", "89", "bytes 8-9/10", http.StatusPartialContent},
		{"bytes=8-100", "89", "bytes 8-9/10", http.StatusPartialContent},
		{"bytes=-100", "0123456789", "bytes 0-9/10", http.StatusPartialContent},
		{"Bytes = 9-9", "9", "bytes 9-9/10", http.StatusPartialContent},
		// RFC 9110: what the server does not understand or chooses not to
		// serve is ignored, and the whole blob sent.
		{"lines=1-2", "0123456789", "", http.StatusOK},
		{"bytes=x-", "0123456789", "", http.StatusOK},
		{"bytes=+1-2", "0123456789", "", http.StatusOK},
		{"bytes=0-1,3-4", "0123456789", "", http.StatusOK},
		{"bytes", "0123456789", "", http.StatusOK},
		// Unsatisfiable: past the end, or an empty suffix.
		{"bytes=10-", "", "bytes */10", http.StatusRequestedRangeNotSatisfiable},
		{"bytes=10-20", "", "bytes */10", http.StatusRequestedRangeNotSatisfiable},
		{"bytes=-0", "", "bytes */10", http.StatusRequestedRangeNotSatisfiable},
		// Ends before it starts: the conformance suite's "range 500-0".
		{"bytes=5-2", "", "bytes */10", http.StatusRequestedRangeNotSatisfiable},
	} {
		w := c.do("GET", "/v2/ok/blobs/"+d.String(), nil, "Range", tc.rng)
		if w.Code != tc.status || w.Header().Get("Content-Range") != tc.contentRange ||
			(tc.status != http.StatusRequestedRangeNotSatisfiable && w.Body.String() != tc.body) {
			t.Errorf("Range %q: %d %q Content-Range %q, want %d %q %q", tc.rng, w.Code, w.Body, w.Header().Get("Content-Range"),
				tc.status, tc.body, tc.contentRange)
		}
		if tc.status == http.StatusRequestedRangeNotSatisfiable && !strings.Contains(w.Body.String(), "RANGE_INVALID") {
			t.Errorf("Range %q: 416 body %s", tc.rng, w.Body)
		}
	}
	// An empty blob has no suffix to cut: its one range is the whole of it.
	empty := c.pushBlob("ok", nil)
	w := c.do("GET", "/v2/ok/blobs/"+empty.String(), nil, "Range", "bytes=-5")
	c.want(w, http.StatusOK, "")
	if w.Body.Len() != 0 || w.Header().Get("Content-Length") != "0" {
		t.Errorf("empty blob with a suffix range: %q, Content-Length %s", w.Body, w.Header().Get("Content-Length"))
	}
}

func TestTagsCatalogReferrers(t *testing.T) {
	c := newClient(t, inmemory.New(), Options{})
	subject, raw := c.pushImage("team/app", "a", nil, "")
	desc := &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subject, Size: int64(len(raw))}
	for _, tag := range []string{"b", "c", "d"} {
		c.pushImage("team/app", tag, nil, "")
	}
	sig, _ := c.pushImage("team/app", "sig", desc, "application/example.sig")
	c.pushImage("team/app", "sbom", desc, "application/example.sbom")
	c.pushImage("other", "x", nil, "")

	w := c.do("GET", "/v2/team/app/tags/list?n=2&last=a", nil)
	c.want(w, http.StatusOK, "")
	if !strings.Contains(w.Body.String(), `"tags":["b","c"]`) || !strings.Contains(w.Header().Get("Link"), "last=c") {
		t.Errorf("page: %s Link %q", w.Body, w.Header().Get("Link"))
	}
	c.want(c.do("GET", "/v2/nothing/tags/list", nil), http.StatusNotFound, "NAME_UNKNOWN")
	c.pushBlob("zz/blobs-only", []byte("x"))
	if w := c.do("GET", "/v2/zz/blobs-only/tags/list", nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"tags":[]`) {
		t.Errorf("repository without tags: %d %s", w.Code, w.Body)
	}
	c.want(c.do("GET", "/v2/team/app/tags/list?n=-1", nil), http.StatusBadRequest, "")
	w = c.do("GET", "/v2/_catalog?n=1", nil)
	if !strings.Contains(w.Body.String(), `["other"]`) || w.Header().Get("Link") == "" {
		t.Errorf("catalog: %s Link %q", w.Body, w.Header().Get("Link"))
	}
	w = c.do("GET", "/v2/team/app/referrers/"+subject.String()+"?artifactType=application/example.sig", nil)
	c.want(w, http.StatusOK, "")
	var idx ocispec.Index
	json.Unmarshal(w.Body.Bytes(), &idx)
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sig || w.Header().Get("OCI-Filters-Applied") != "artifactType" {
		t.Fatalf("referrers: %s", w.Body)
	}
	// Deleting the referrer by digest drops it from the index and its tag.
	c.want(c.do("DELETE", "/v2/team/app/manifests/"+sig.String(), nil), http.StatusAccepted, "")
	w = c.do("GET", "/v2/team/app/referrers/"+subject.String(), nil)
	if strings.Contains(w.Body.String(), sig.String()) || !strings.Contains(w.Body.String(), "example.sbom") {
		t.Errorf("after delete: %s", w.Body)
	}
	c.want(c.do("GET", "/v2/team/app/manifests/sig", nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		path string
		want route
	}{
		{"a/b/manifests/latest", route{"a/b", "manifest", "latest"}},
		{"a/manifests/b/manifests/x", route{"a/manifests/b", "manifest", "x"}},
		{"a/blobs/uploads/", route{"a", "uploads", ""}},
		{"a/blobs/uploads", route{"a", "uploads", ""}},
		{"a/blobs/uploads/abc", route{"a", "upload", "abc"}},
		{"a/blobs/sha256:00", route{"a", "blob", "sha256:00"}},
		{"x/tags/list", route{"x", "tags", ""}},
		{"x/referrers/sha256:00", route{"x", "referrers", "sha256:00"}},
	} {
		got, ok := parseRoute(tc.path)
		if !ok || got != tc.want {
			t.Errorf("parseRoute(%q) = %+v, %v; want %+v", tc.path, got, ok, tc.want)
		}
	}
	if _, ok := parseRoute("a/b"); ok {
		t.Error("a/b routed")
	}
}

// TestIndexNeedsItsChildrensContent: an index naming a child manifest
// whose revision is there but whose content is gone is refused, so that
// no new push names a child that cannot be pulled.
func TestIndexNeedsItsChildrensContent(t *testing.T) {
	drv := inmemory.New()
	c := newClient(t, drv, Options{})
	child, _ := c.pushImage("r", "child", nil, "")
	other, _ := c.pushImage("r", "other", nil, "")
	c.pushIndex("r", "whole", child, other)
	if err := drv.Delete(context.Background(), path.Dir(blobDataPath(child))); err != nil {
		t.Fatal(err)
	}
	idx := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":1}]}`,
		ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, child)
	c.want(c.do("PUT", "/v2/r/manifests/broken", []byte(idx), "Content-Type", ocispec.MediaTypeImageIndex), http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
	c.want(c.do("HEAD", "/v2/r/manifests/broken", nil), http.StatusNotFound, "")
}
