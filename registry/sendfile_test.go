package registry

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// readFromRecorder is a ResponseWriter with a ReadFrom, as net/http's own
// is: it records what it was handed, to show the blob's file reaches it.
type readFromRecorder struct {
	*httptest.ResponseRecorder
	sources []io.Reader
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.sources = append(r.sources, src)
	return io.Copy(r.ResponseRecorder, src)
}

// fileUnder reports whether src is a file, or a limit on one: what
// net.TCPConn.ReadFrom turns into sendfile(2).
func fileUnder(src io.Reader) bool {
	if lr, ok := src.(*io.LimitedReader); ok {
		src = lr.R
	}
	_, ok := src.(*os.File)
	return ok
}

func TestBlobBodyReachesReadFrom(t *testing.T) {
	data := bytes.Repeat([]byte("sendfile "), 10000)
	for _, tc := range []struct {
		name     string
		fs       bool
		rng      string
		body     []byte
		wantFile bool
	}{
		{name: "filesystem whole", fs: true, body: data, wantFile: true},
		{name: "filesystem range", fs: true, rng: "bytes=100-1099", body: data[100:1100], wantFile: true},
		{name: "inmemory", body: data},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, inmemory.New(), Options{})
			if tc.fs {
				c = newClient(t, filesystem.New(filesystem.DriverParameters{RootDirectory: t.TempDir(), MaxThreads: 25}), Options{})
			}
			d := c.pushBlob("a/b", data)
			req := httptest.NewRequest("GET", "/v2/a/b/blobs/"+d.String(), nil)
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			w := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
			c.h.ServeHTTP(w, req)
			if w.Code != http.StatusOK && w.Code != http.StatusPartialContent {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if !bytes.Equal(w.Body.Bytes(), tc.body) {
				t.Fatalf("got %d bytes, want %d", w.Body.Len(), len(tc.body))
			}
			if got := w.Header().Get("Content-Length"); got != strconv.Itoa(len(tc.body)) {
				t.Fatalf("Content-Length %s, want %d", got, len(tc.body))
			}
			if len(w.sources) != 1 {
				t.Fatalf("ReadFrom called %d times, want once", len(w.sources))
			}
			if got := fileUnder(w.sources[0]); got != tc.wantFile {
				t.Fatalf("ReadFrom got %T (a file: %v), want a file: %v", w.sources[0], got, tc.wantFile)
			}
		})
	}
}
