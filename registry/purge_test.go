package registry

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

func TestPurgeUploadsDeletesOnlyOldSessions(t *testing.T) {
	ctx := context.Background()
	drv := inmemory.New()
	c := newClient(t, drv, Options{})
	g := New(drv, Options{})
	old := c.do("POST", "/v2/team/app/blobs/uploads/", nil).Header().Get("Docker-Upload-UUID")
	fresh := c.do("POST", "/v2/other/blobs/uploads/", nil).Header().Get("Docker-Upload-UUID")
	u, err := g.loadState(ctx, "team/app", old)
	if err != nil {
		t.Fatal(err)
	}
	u.state.Started = time.Now().Add(-48 * time.Hour)
	raw, _ := json.Marshal(u.state)
	if err := drv.PutContent(ctx, uploadStatePath("team/app", old), raw); err != nil {
		t.Fatal(err)
	}
	n, err := g.PurgeUploads(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("purged %d, %v; want 1", n, err)
	}
	c.want(c.do("GET", "/v2/team/app/blobs/uploads/"+old, nil), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
	c.want(c.do("GET", "/v2/other/blobs/uploads/"+fresh, nil), http.StatusNoContent, "")
}
