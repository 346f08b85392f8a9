package registry

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// FuzzHandler sends arbitrary requests to a registry holding an image and
// an open upload: none may panic, and none may be answered with a 5xx,
// since over a healthy driver every failure is the client's input.
func FuzzHandler(f *testing.F) {
	for _, seed := range []struct{ method, target, hdr, body string }{
		{"GET", "/v2/", "", ""},
		{"GET", "/v2/team/app/manifests/a", "", ""},
		{"PUT", "/v2/team/app/manifests/x", "application/vnd.oci.image.manifest.v1+json", `{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}`},
		{"PUT", "/v2/team/app/manifests/sha512:00", "application/vnd.oci.image.index.v1+json", `{"schemaVersion":2,"manifests":[{}]}`},
		{"GET", "/v2/team/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000", "bytes=1-0", ""},
		{"POST", "/v2/team/app/blobs/uploads/?mount=sha256:00&from=../x", "", ""},
		{"POST", "/v2/team/app/blobs/uploads/?digest=sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "", "hello"},
		{"PATCH", "/v2/team/app/blobs/uploads/UPLOAD", "0-4", "hello"},
		{"PUT", "/v2/team/app/blobs/uploads/UPLOAD?digest=sha512:abc", "5-5", "x"},
		{"GET", "/v2/team/app/tags/list?n=1&last=a", "", ""},
		{"GET", "/v2/_catalog?n=-5", "", ""},
		{"GET", "/v2/team/app/referrers/sha256:zz?artifactType=a", "", ""},
		{"DELETE", "/v2/team/app/manifests/a", "", ""},
		{"DELETE", "/v2/team//app/blobs/uploads/../../x", "", ""},
	} {
		f.Add(seed.method, seed.target, seed.hdr, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, method, target, hdr string, body []byte) {
		c := newClient(t, inmemory.New(), Options{})
		c.pushImage("team/app", "a", nil, "")
		w := c.do("POST", "/v2/team/app/blobs/uploads/", nil)
		target = string(bytes.ReplaceAll([]byte(target), []byte("UPLOAD"), []byte(w.Header().Get("Docker-Upload-UUID"))))
		req, err := http.NewRequest(method, "http://registry"+target, bytes.NewReader(body))
		if err != nil {
			return // not a request a server could receive
		}
		for _, h := range []string{"Content-Type", "Content-Range", "Range"} {
			req.Header.Set(h, hdr)
		}
		rec := httptest.NewRecorder()
		c.h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body)
		}
	})
}
