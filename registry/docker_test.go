package registry

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker v2 schema 2 media types, spelled out here rather than taken from
// package manifest so that a misspelling there fails these tests.
const (
	dockerList    = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerImage   = "application/vnd.docker.distribution.manifest.v2+json"
	dockerConfig  = "application/vnd.docker.container.image.v1+json"
	dockerLayer   = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// dockerManifest is a Docker v2 schema 2 image manifest or manifest list.
type dockerManifest struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	Config        *ocispec.Descriptor  `json:"config,omitempty"`
	Layers        []ocispec.Descriptor `json:"layers,omitempty"`
	Manifests     []ocispec.Descriptor `json:"manifests,omitempty"`
}

func (m dockerManifest) raw(t testing.TB) []byte {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// dockerBlob pushes data to name and describes it as mediaType.
func (c *client) dockerBlob(name, mediaType string, data []byte) ocispec.Descriptor {
	c.t.Helper()
	return ocispec.Descriptor{MediaType: mediaType, Digest: c.pushBlob(name, data), Size: int64(len(data))}
}

// dockerImage returns a Docker image manifest for arch whose config and
// layer are pushed to name (the manifest itself is not) and the
// descriptor a manifest list names it by.
func (c *client) dockerImage(name, arch string) ([]byte, ocispec.Descriptor) {
	c.t.Helper()
	cfg := c.dockerBlob(name, dockerConfig, []byte(`{"architecture":"`+arch+`","os":"linux","rootfs":{"type":"layers"}}`))
	layer := c.dockerBlob(name, dockerLayer, []byte("gzip layer for "+arch))
	raw := dockerManifest{SchemaVersion: 2, MediaType: dockerImage, Config: &cfg, Layers: []ocispec.Descriptor{layer}}.raw(c.t)
	return raw, ocispec.Descriptor{MediaType: dockerImage, Digest: digest.FromBytes(raw), Size: int64(len(raw)),
		Platform: &ocispec.Platform{Architecture: arch, OS: "linux"}}
}

func (c *client) putManifest(name, ref, mediaType string, raw []byte) *httptest.ResponseRecorder {
	c.t.Helper()
	return c.do("PUT", "/v2/"+name+"/manifests/"+ref, raw, "Content-Type", mediaType)
}

// served checks that GET and HEAD of manifest ref answer raw, byte for
// byte, as mediaType under digest d.
func (c *client) served(name, ref, mediaType string, d digest.Digest, raw []byte) {
	c.t.Helper()
	for _, method := range []string{"GET", "HEAD"} {
		w := c.do(method, "/v2/"+name+"/manifests/"+ref, nil)
		c.want(w, http.StatusOK, "")
		h := w.Header()
		if got := h.Get("Content-Type"); got != mediaType {
			c.t.Errorf("%s %s: Content-Type %q, want %q", method, ref, got, mediaType)
		}
		if got := h.Get("Docker-Content-Digest"); got != d.String() {
			c.t.Errorf("%s %s: Docker-Content-Digest %q, want %s", method, ref, got, d)
		}
		if got := h.Get("Content-Length"); got != strconv.Itoa(len(raw)) {
			c.t.Errorf("%s %s: Content-Length %q, want %d", method, ref, got, len(raw))
		}
		want := raw
		if method == "HEAD" {
			want = nil
		}
		if got := w.Body.Bytes(); string(got) != string(want) {
			c.t.Errorf("%s %s: body %q, want %q", method, ref, got, want)
		}
	}
}

// notStored checks that neither tag nor digest d of name is served.
func (c *client) notStored(name, tag string, d digest.Digest) {
	c.t.Helper()
	c.want(c.do("GET", "/v2/"+name+"/manifests/"+tag, nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
	c.want(c.do("GET", "/v2/"+name+"/manifests/"+d.String(), nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
}

func TestDockerManifestList(t *testing.T) {
	const repo = "docker/multi"
	c := newClient(t, inmemory.New(), Options{})
	amd, amdDesc := c.dockerImage(repo, "amd64")
	arm, armDesc := c.dockerImage(repo, "arm64")
	for _, child := range [][]byte{amd, arm} {
		d := digest.FromBytes(child)
		c.want(c.putManifest(repo, d.String(), dockerImage, child), http.StatusCreated, "")
	}
	list := dockerManifest{SchemaVersion: 2, MediaType: dockerList, Manifests: []ocispec.Descriptor{amdDesc, armDesc}}.raw(t)
	d := digest.FromBytes(list)
	w := c.putManifest(repo, "v1", dockerList, list)
	c.want(w, http.StatusCreated, "")
	if got := w.Header().Get("Docker-Content-Digest"); got != d.String() {
		t.Fatalf("PUT answered Docker-Content-Digest %q, want %s", got, d)
	}
	c.served(repo, "v1", dockerList, d, list)
	c.served(repo, d.String(), dockerList, d, list)
	c.served(repo, amdDesc.Digest.String(), dockerImage, amdDesc.Digest, amd)
	c.served(repo, armDesc.Digest.String(), dockerImage, armDesc.Digest, arm)
}

func TestDockerManifestListBeforeItsManifests(t *testing.T) {
	const repo = "docker/early"
	c := newClient(t, inmemory.New(), Options{})
	amd, amdDesc := c.dockerImage(repo, "amd64")
	arm, armDesc := c.dockerImage(repo, "arm64")
	list := dockerManifest{SchemaVersion: 2, MediaType: dockerList, Manifests: []ocispec.Descriptor{amdDesc, armDesc}}.raw(t)
	d := digest.FromBytes(list)

	c.want(c.putManifest(repo, "v1", dockerList, list), http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
	c.notStored(repo, "v1", d)
	// One of the two is not enough.
	c.want(c.putManifest(repo, amdDesc.Digest.String(), dockerImage, amd), http.StatusCreated, "")
	c.want(c.putManifest(repo, "v1", dockerList, list), http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
	c.notStored(repo, "v1", d)
	c.want(c.putManifest(repo, armDesc.Digest.String(), dockerImage, arm), http.StatusCreated, "")
	c.want(c.putManifest(repo, "v1", dockerList, list), http.StatusCreated, "")
	c.served(repo, "v1", dockerList, d, list)

	// A mirror of some platforms only (--allow-sparse) takes the list
	// without its manifests.
	sparse := newClient(t, inmemory.New(), Options{AllowSparse: true})
	sparse.want(sparse.putManifest(repo, "v1", dockerList, list), http.StatusCreated, "")
	sparse.served(repo, "v1", dockerList, d, list)
	sparse.served(repo, d.String(), dockerList, d, list)
	sparse.want(sparse.do("GET", "/v2/"+repo+"/manifests/"+amdDesc.Digest.String(), nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
}

// TestDockerForeignLayers: a foreign layer lives at its urls, so a
// manifest naming one is accepted without its blob; the same layer with a
// distributable media type must have been pushed.
func TestDockerForeignLayers(t *testing.T) {
	const repo = "docker/windows"
	foreignData := []byte("a base layer only its vendor may distribute")
	foreign := digest.FromBytes(foreignData)
	for _, tc := range []struct {
		name       string
		mediaType  string
		pushConfig bool
		opts       Options
		status     int
		code       string
	}{
		{"foreign layer never pushed", dockerForeign, true, Options{}, http.StatusCreated, ""},
		{"same layer, distributable", dockerLayer, true, Options{}, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN"},
		{"same layer, distributable, --allow-sparse", dockerLayer, true, Options{AllowSparse: true}, http.StatusCreated, ""},
		{"foreign layer, config never pushed", dockerForeign, false, Options{}, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, inmemory.New(), tc.opts)
			cfgData := []byte(`{"architecture":"amd64","os":"windows"}`)
			cfg := ocispec.Descriptor{MediaType: dockerConfig, Digest: digest.FromBytes(cfgData), Size: int64(len(cfgData))}
			if tc.pushConfig {
				cfg = c.dockerBlob(repo, dockerConfig, cfgData)
			}
			m := dockerManifest{SchemaVersion: 2, MediaType: dockerImage, Config: &cfg, Layers: []ocispec.Descriptor{
				{MediaType: tc.mediaType, Digest: foreign, Size: int64(len(foreignData)),
					URLs: []string{"https://vendor.example/layers/" + foreign.Encoded()}},
				c.dockerBlob(repo, dockerLayer, []byte("an ordinary layer on top")),
			}}
			raw := m.raw(t)
			d := digest.FromBytes(raw)
			c.want(c.putManifest(repo, "v1", dockerImage, raw), tc.status, tc.code)
			if tc.status != http.StatusCreated {
				c.notStored(repo, "v1", d)
				return
			}
			c.served(repo, "v1", dockerImage, d, raw)
			c.served(repo, d.String(), dockerImage, d, raw)
			// Accepting the manifest does not make the registry claim the blob.
			c.want(c.do("GET", "/v2/"+repo+"/blobs/"+foreign.String(), nil), http.StatusNotFound, "BLOB_UNKNOWN")
		})
	}
}
