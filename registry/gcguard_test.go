package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// hookDriver runs after once, right after the first successful
// PutContent of path at: the interleaving a test wants between a
// request's writes and a collection.
type hookDriver struct {
	storagedriver.StorageDriver
	at    string
	after func()
	once  sync.Once
}

func (h *hookDriver) PutContent(ctx context.Context, p string, content []byte) error {
	err := h.StorageDriver.PutContent(ctx, p, content)
	if err == nil && p == h.at {
		h.once.Do(h.after)
	}
	return err
}

// collector plays a collection that deletes paths under markers on ds:
// with wait it returns once the markers are down and deletes a little
// later (a collection still running when the writer checks); without, it
// has finished when it returns. done is closed when it has finished.
func collector(t *testing.T, drv storagedriver.StorageDriver, ds []digest.Digest, paths []string, wait bool) (after func(), done <-chan struct{}) {
	finished := make(chan struct{})
	return func() {
		ctx := context.Background()
		g := New(drv, Options{})
		run, _ := newRunID()
		for _, d := range ds {
			if err := drv.PutContent(ctx, markerPath(run, d), []byte(d)); err != nil {
				t.Error(err)
			}
		}
		finish := func() {
			for _, p := range paths {
				if err := drv.Delete(ctx, p); err != nil {
					t.Error(err)
				}
			}
			if err := g.finishRun(ctx, run); err != nil {
				t.Error(err)
			}
			close(finished)
		}
		if !wait {
			finish()
			return
		}
		go func() {
			time.Sleep(100 * time.Millisecond)
			finish()
		}()
	}, finished
}

// imageManifest pushes a config and a layer to name and returns the
// manifest that names them, not yet pushed.
func (c *client) imageManifest(name string) ([]byte, digest.Digest, digest.Digest) {
	cfg, layer := []byte(`{"os":"linux"}`), []byte("layer of "+name)
	m := ocispec.Manifest{
		Versioned: specsVersioned, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: c.pushBlob(name, cfg), Size: int64(len(cfg))},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: c.pushBlob(name, layer), Size: int64(len(layer))}},
	}
	raw, _ := json.Marshal(m)
	return raw, digest.FromBytes(raw), m.Layers[0].Digest
}

func TestPutManifestTakenBackWhenGCDeletesALayer(t *testing.T) {
	for _, wait := range []bool{true, false} {
		name := map[bool]string{true: "collection still running", false: "collection finished"}[wait]
		t.Run(name, func(t *testing.T) {
			mem := inmemory.New()
			h := &hookDriver{StorageDriver: mem}
			var done <-chan struct{}
			c := newClient(t, h, Options{})
			raw, d, layer := c.imageManifest("r")
			// The collection deletes the layer right after the manifest's
			// revision is written: the PUT must not answer 201.
			h.at = revisionLinkPath("r", d)
			h.after, done = collector(t, mem, []digest.Digest{layer}, []string{path.Dir(blobDataPath(layer))}, wait)
			c.want(c.do("PUT", "/v2/r/manifests/v1", raw, "Content-Type", ocispec.MediaTypeImageManifest),
				http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
			<-done
			c.gone("r", "v1")
			c.gone("r", d.String())
		})
	}
}

func TestPutManifestRestoresWhatGCDeleted(t *testing.T) {
	mem := inmemory.New()
	h := &hookDriver{StorageDriver: mem}
	var done <-chan struct{}
	c := newClient(t, h, Options{})
	raw, d, _ := c.imageManifest("r")
	// A collection deleting this very manifest (untagged until now) as
	// the PUT tags it: the PUT puts it back.
	h.at = tagLinkPath("r", "v1")
	h.after, done = collector(t, mem, []digest.Digest{d},
		[]string{path.Dir(revisionLinkPath("r", d)), path.Dir(blobDataPath(d))}, true)
	c.want(c.do("PUT", "/v2/r/manifests/v1", raw, "Content-Type", ocispec.MediaTypeImageManifest), http.StatusCreated, "")
	<-done
	c.pullable("r", "v1")
}

func TestUploadFinishRestoresWhatGCDeleted(t *testing.T) {
	mem := inmemory.New()
	h := &hookDriver{StorageDriver: mem}
	var done <-chan struct{}
	c := newClient(t, h, Options{})
	data := []byte("shared by a and b")
	d := c.pushBlob("a", data)
	// b uploads the same content; a collection deletes the blob (which
	// a no longer needs) as b links it: the upload's own copy replaces it.
	h.at = layerLinkPath("b", d)
	h.after, done = collector(t, mem, []digest.Digest{d}, []string{path.Dir(blobDataPath(d))}, true)
	c.pushBlob("b", data)
	<-done
	w := c.do("GET", "/v2/b/blobs/"+d.String(), nil)
	c.want(w, http.StatusOK, "")
	if w.Body.String() != string(data) {
		t.Fatalf("blob content %q", w.Body)
	}
}

func TestMountFallsBackWhenGCDeletes(t *testing.T) {
	mem := inmemory.New()
	h := &hookDriver{StorageDriver: mem}
	var done <-chan struct{}
	c := newClient(t, h, Options{})
	d := c.pushBlob("a", []byte("mounted"))
	h.at = layerLinkPath("b", d)
	h.after, done = collector(t, mem, []digest.Digest{d}, []string{path.Dir(blobDataPath(d))}, true)
	// Not 201: the blob went, so the client gets a session to upload it.
	c.want(c.do("POST", "/v2/b/blobs/uploads/?mount="+d.String()+"&from=a", nil), http.StatusAccepted, "")
	<-done
}

// age sets the modification time of a driver path in a filesystem driver
// rooted at root.
func age(t *testing.T, root, p string, by time.Duration) {
	t.Helper()
	old := time.Now().Add(-by)
	if err := os.Chtimes(filepath.Join(root, filepath.FromSlash(p)), old, old); err != nil {
		t.Fatal(err)
	}
}

func TestHeadRefreshesLinkForGrace(t *testing.T) {
	root := t.TempDir()
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 10})
	c := newClient(t, drv, Options{})
	headed := c.pushBlob("r", []byte("a client found this with HEAD"))
	ignored := c.pushBlob("r", []byte("nobody asked for this"))
	for _, d := range []digest.Digest{headed, ignored} {
		age(t, root, blobDataPath(d), 2*time.Hour)
		age(t, root, layerLinkPath("r", d), 2*time.Hour)
	}
	c.want(c.do("HEAD", "/v2/r/blobs/"+headed.String(), nil), http.StatusOK, "")
	rep, err := GC(context.Background(), drv, GCOptions{Grace: time.Hour})
	if err != nil || rep.Blobs != 1 {
		t.Fatalf("gc: %+v, %v; want only the blob nobody asked for deleted", rep, err)
	}
	c.want(c.do("HEAD", "/v2/r/blobs/"+headed.String(), nil), http.StatusOK, "")
	c.want(c.do("HEAD", "/v2/r/blobs/"+ignored.String(), nil), http.StatusNotFound, "")
}

func TestStaleMarkersDoNotBlockWriters(t *testing.T) {
	root := t.TempDir()
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 10})
	c := newClient(t, drv, Options{})
	raw, d, layer := c.imageManifest("r")
	// A collection that crashed after marking: its markers are old.
	if err := drv.PutContent(context.Background(), markerPath("crashed", layer), []byte(layer)); err != nil {
		t.Fatal(err)
	}
	age(t, root, markerPath("crashed", layer), 2*markerStale)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := c.do("PUT", "/v2/r/manifests/v1", raw, "Content-Type", ocispec.MediaTypeImageManifest)
	c.want(req, http.StatusCreated, "")
	if _, err := New(drv, Options{}).GC(ctx, GCOptions{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := drv.Stat(ctx, gcRunPath("crashed")); !isNotFound(err) {
		t.Fatalf("stale run not cleared: %v", err)
	}
	c.pullable("r", d.String())
}

// TestPutManifestAmidDoneRecordRewrite is how a push "succeeded" with a
// layer missing (TestRegistryGCWhileServing): a collection deleted the
// layer right after the PUT's commit, and the PUT's check after it met
// the filesystem driver's temporary file of the done record
// (done.<uuid>.tmp), took it for a run, failed on it and left the
// manifest in place; the client's retry then found the tag by HEAD and
// skipped the push. The check must see through the temporary file and
// refuse the manifest, leaving no tag behind.
func TestPutManifestAmidDoneRecordRewrite(t *testing.T) {
	root := t.TempDir()
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 10})
	h := &hookDriver{StorageDriver: drv}
	c := newClient(t, h, Options{})
	raw, d, layer := c.imageManifest("r")
	h.at = tagLinkPath("r", "v1")
	collect, done := collector(t, drv, []digest.Digest{layer}, []string{path.Dir(blobDataPath(layer))}, false)
	h.after = func() {
		collect()
		// What PutContent of the done record leaves there meanwhile.
		tmp := filepath.Join(root, filepath.FromSlash(gcDonePath()+".0b5e2a1c.tmp"))
		if err := os.WriteFile(tmp, []byte("x"), 0o644); err != nil {
			t.Error(err)
		}
	}
	c.want(c.do("PUT", "/v2/r/manifests/v1", raw, "Content-Type", ocispec.MediaTypeImageManifest),
		http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
	<-done
	c.want(c.do("HEAD", "/v2/r/manifests/v1", nil), http.StatusNotFound, "")
	c.gone("r", d.String())
	// A collection meeting the temporary file goes on too.
	if _, err := New(drv, Options{}).GC(context.Background(), GCOptions{Grace: time.Hour}); err != nil {
		t.Fatalf("gc with a temporary file in its directory: %v", err)
	}
}

// failingList fails List under the collections' directory once armed.
type failingList struct {
	storagedriver.StorageDriver
	armed atomic.Bool
}

func (f *failingList) List(ctx context.Context, p string) ([]string, error) {
	if f.armed.Load() && p == gcPath() {
		return nil, errors.New("storage unavailable")
	}
	return f.StorageDriver.List(ctx, p)
}

// TestPutManifestTakenBackWhenCheckFails: a PUT that cannot check what
// it committed against collections (here the storage fails) answers an
// error and takes the manifest back, so that a retry pushes it again
// instead of finding it by tag unchecked.
func TestPutManifestTakenBackWhenCheckFails(t *testing.T) {
	f := &failingList{StorageDriver: inmemory.New()}
	h := &hookDriver{StorageDriver: f}
	c := newClient(t, h, Options{})
	raw, d, _ := c.imageManifest("r")
	h.at = tagLinkPath("r", "v1")
	h.after = func() { f.armed.Store(true) }
	c.want(c.do("PUT", "/v2/r/manifests/v1", raw, "Content-Type", ocispec.MediaTypeImageManifest),
		http.StatusInternalServerError, "")
	f.armed.Store(false)
	c.want(c.do("HEAD", "/v2/r/manifests/v1", nil), http.StatusNotFound, "")
	c.gone("r", d.String())
	c.want(c.do("PUT", "/v2/r/manifests/v1", raw, "Content-Type", ocispec.MediaTypeImageManifest), http.StatusCreated, "")
	c.pullable("r", "v1")
}

// TestFailedRePushKeepsEarlierPush: a PUT of a manifest that was already
// there, failing after its commit for a reason other than missing
// references, takes back only the tag it added: the earlier push stays.
func TestFailedRePushKeepsEarlierPush(t *testing.T) {
	f := &failingList{StorageDriver: inmemory.New()}
	h := &hookDriver{StorageDriver: f}
	c := newClient(t, h, Options{})
	raw, _, _ := c.imageManifest("r")
	c.want(c.do("PUT", "/v2/r/manifests/v1", raw, "Content-Type", ocispec.MediaTypeImageManifest), http.StatusCreated, "")
	h.at = tagLinkPath("r", "v2")
	h.after = func() { f.armed.Store(true) }
	c.want(c.do("PUT", "/v2/r/manifests/v2", raw, "Content-Type", ocispec.MediaTypeImageManifest),
		http.StatusInternalServerError, "")
	f.armed.Store(false)
	c.want(c.do("HEAD", "/v2/r/manifests/v2", nil), http.StatusNotFound, "")
	c.pullable("r", "v1")
}
