package registry

import (
	"context"
	"net/http"
	"os"
	"path"
	"syscall"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// refillDriver plays a writer that puts content back into a directory
// while a collection deletes it: Delete of a path in refill deletes it,
// writes the content back, and fails as the filesystem driver's
// os.RemoveAll then does.
type refillDriver struct {
	storagedriver.StorageDriver
	refill map[string]map[string][]byte // directory -> file -> content
}

func (d *refillDriver) Delete(ctx context.Context, p string) error {
	if err := d.StorageDriver.Delete(ctx, p); err != nil {
		return err
	}
	put, ok := d.refill[p]
	if !ok {
		return nil
	}
	delete(d.refill, p)
	for f, content := range put {
		if err := d.StorageDriver.PutContent(ctx, f, content); err != nil {
			return err
		}
	}
	return storagedriver.Error{DriverName: "filesystem", Detail: &os.PathError{Op: "unlinkat", Path: p, Err: syscall.ENOTEMPTY}}
}

// TestGCLeavesWhatIsWrittenAgain: a blob stored again, or a link written
// again, while the collection deletes it stays as the writer left it, and
// the collection goes on instead of failing.
func TestGCLeavesWhatIsWrittenAgain(t *testing.T) {
	drv := &refillDriver{StorageDriver: inmemory.New()}
	c := newClient(t, drv, Options{})
	orphan := c.pushBlob("up", []byte("uploaded, manifest not yet pushed"))
	relinked := c.pushBlob("up", []byte("linked again while collected"))
	c.pushImage("up", "v1", nil, "")
	c.want(c.do("DELETE", "/v2/up/manifests/v1", nil), http.StatusAccepted, "")
	ctx := context.Background()
	content := func(p string) []byte {
		raw, err := drv.GetContent(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	drv.refill = map[string]map[string][]byte{
		path.Dir(blobDataPath(orphan)):          {blobDataPath(orphan): content(blobDataPath(orphan))},
		path.Dir(layerLinkPath("up", relinked)): {layerLinkPath("up", relinked): content(layerLinkPath("up", relinked))},
	}

	rep := runGC(t, drv, GCOptions{DeleteUntagged: true})
	// Without the refills: 1 manifest, 5 blobs, 4 links (TestGCGracePeriod's
	// image and two blobs of their own).
	if rep.Manifests != 1 || rep.Blobs != 4 || rep.Links != 2 {
		t.Fatalf("report %+v; want 1 manifest, 4 blobs and 2 links deleted", rep)
	}
	if len(drv.refill) != 0 {
		t.Fatalf("the collection did not delete %v", drv.refill)
	}
	c.want(c.do("HEAD", "/v2/up/blobs/"+orphan.String(), nil), http.StatusOK, "")
	if _, err := drv.Stat(ctx, layerLinkPath("up", relinked)); err != nil {
		t.Errorf("link written again: %v", err)
	}
	c.want(c.do("HEAD", "/v2/up/blobs/"+relinked.String(), nil), http.StatusNotFound, "")
}

func TestIsRefilled(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{storagedriver.Error{DriverName: "filesystem", Detail: &os.PathError{Op: "unlinkat", Err: syscall.ENOTEMPTY}}, true},
		{&os.PathError{Op: "unlinkat", Err: syscall.ENOTEMPTY}, true},
		{storagedriver.Error{DriverName: "filesystem", Detail: &os.PathError{Op: "unlinkat", Err: syscall.EACCES}}, false},
		{storagedriver.PathNotFoundError{Path: "/x"}, false},
	} {
		if got := isRefilled(tc.err); got != tc.want {
			t.Errorf("isRefilled(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
