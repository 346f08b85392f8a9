package registry

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// TestErrorsKeepTheConnection: an error answered after a handler set
// headers for success (a PATCH out of order gets 416 with the upload's
// Range) declares the length of its body, so the client's connection
// stays usable for its next request, such as the chunk that does fit.
func TestErrorsKeepTheConnection(t *testing.T) {
	srv := httptest.NewServer(New(inmemory.New(), Options{}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	do := func(method, path, contentRange string, body []byte) (*http.Response, []byte, bool) {
		t.Helper()
		reused := false
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), method, srv.URL+path, bytes.NewReader(body))
		if contentRange != "" {
			req.Header.Set("Content-Range", contentRange)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp, raw, reused
	}
	resp, _, _ := do(http.MethodPost, "/v2/ka/blobs/uploads/", "", nil)
	loc := resp.Header.Get("Location")
	do(http.MethodPatch, loc, "0-3", []byte("0123"))
	resp, body, _ := do(http.MethodPatch, loc, "0-0", []byte("x"))
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Range") != "0-3" {
		t.Fatalf("out-of-order chunk: %s, Range %q", resp.Status, resp.Header.Get("Range"))
	}
	if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) || len(body) == 0 {
		t.Errorf("416 declares Content-Length %s for a body of %d bytes", cl, len(body))
	}
	resp, _, reused := do(http.MethodPatch, loc, "4-5", []byte("45"))
	if resp.StatusCode != http.StatusAccepted || !reused {
		t.Errorf("next chunk after the 416: %s, connection reused: %v", resp.Status, reused)
	}
}
