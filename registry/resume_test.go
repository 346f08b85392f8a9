package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
)

// readCountingDriver counts the reads of upload data.
type readCountingDriver struct {
	storagedriver.StorageDriver
	reads atomic.Int64
}

func (d *readCountingDriver) Reader(ctx context.Context, p string, off int64) (io.ReadCloser, error) {
	if strings.HasSuffix(p, "/data") && strings.Contains(p, "/_uploads/") {
		d.reads.Add(1)
	}
	return d.StorageDriver.Reader(ctx, p, off)
}

// TestFinishReadsNoDataWhenTheHashStateIsIntact pushes a blob in two
// chunks through one replica and finishes it on another: the saved hash
// state is enough to verify it. Only when the state is unusable, or the
// digest asks for another algorithm, are the stored bytes read again.
func TestFinishReadsNoDataWhenTheHashStateIsIntact(t *testing.T) {
	data := bytes.Repeat([]byte("resumable "), 50000)
	for _, tc := range []struct {
		name      string
		spoil     func(st map[string]any)
		algorithm digest.Algorithm
		reads     int64
	}{
		{name: "state intact", algorithm: digest.SHA256, reads: 0},
		{name: "hash state lost", spoil: func(st map[string]any) { delete(st, "hash") }, algorithm: digest.SHA256, reads: 1},
		{name: "hash state garbled", spoil: func(st map[string]any) { st["hash"] = []byte("garbage") }, algorithm: digest.SHA256, reads: 1},
		{name: "sha512 asked of a sha256 session", algorithm: digest.SHA512, reads: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drv := &readCountingDriver{StorageDriver: inmemory.New()}
			a, b := newClient(t, drv, Options{}), newClient(t, drv, Options{})
			w := a.do("POST", "/v2/r/blobs/uploads/", nil)
			a.want(w, http.StatusAccepted, "")
			loc := w.Header().Get("Location")
			half := len(data) / 2
			a.want(a.do("PATCH", loc, data[:half]), http.StatusAccepted, "")
			b.want(b.do("PATCH", loc, data[half:]), http.StatusAccepted, "")
			if tc.spoil != nil {
				id := loc[strings.LastIndex(loc, "/")+1:]
				ctx := context.Background()
				raw, err := drv.GetContent(ctx, uploadStatePath("r", id))
				if err != nil {
					t.Fatal(err)
				}
				var st map[string]any
				if err := json.Unmarshal(raw, &st); err != nil {
					t.Fatal(err)
				}
				tc.spoil(st)
				raw, _ = json.Marshal(st)
				if err := drv.PutContent(ctx, uploadStatePath("r", id), raw); err != nil {
					t.Fatal(err)
				}
			}
			if n := drv.reads.Load(); n != 0 {
				t.Fatalf("%d reads of upload data before finishing", n)
			}
			d := tc.algorithm.FromBytes(data)
			a.want(a.do("PUT", loc+"?digest="+d.String(), nil), http.StatusCreated, "")
			if n := drv.reads.Load(); n != tc.reads {
				t.Fatalf("%d reads of upload data to finish, want %d", n, tc.reads)
			}
			w = b.do("GET", "/v2/r/blobs/"+d.String(), nil)
			b.want(w, http.StatusOK, "")
			if !bytes.Equal(w.Body.Bytes(), data) {
				t.Fatal("blob content differs")
			}
		})
	}
}
