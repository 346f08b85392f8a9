package manifest_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/manifest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const ociForeign = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

func ociManifest(layerTypes ...string) ocispec.Manifest {
	m := ocispec.Manifest{
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString("config"), Size: 6},
		Layers:      []ocispec.Descriptor{},
		Annotations: map[string]string{"k": "v"},
	}
	m.SchemaVersion = 2
	for i, mt := range layerTypes {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: digest.FromString(mt), Size: int64(i + 1)})
	}
	return m
}

func layerTypes(t *testing.T, raw []byte) (manifestType, configType string, layers []string) {
	t.Helper()
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		layers = append(layers, l.MediaType)
	}
	return m.MediaType, m.Config.MediaType, layers
}

func TestToDocker(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     ocispec.Manifest
		layers []string
		err    error
		errHas string
	}{
		{name: "gzip and tar", in: ociManifest(ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayer),
			layers: []string{manifest.DockerLayerGzip, manifest.DockerLayerTar}},
		{name: "foreign layer", in: ociManifest(ociForeign), layers: []string{manifest.DockerLayerForeign}},
		{name: "already Docker", in: func() ocispec.Manifest {
			m := ociManifest(manifest.DockerLayerGzip)
			m.MediaType, m.Config.MediaType = manifest.DockerManifest, manifest.DockerConfig
			return m
		}(), layers: []string{manifest.DockerLayerGzip}},
		{name: "no layers", in: ociManifest(), layers: nil},
		{name: "zstd is refused", in: ociManifest(ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd),
			err: manifest.ErrDockerIncompatible, errHas: "--compression gzip"},
		{name: "unknown layer type", in: ociManifest("application/vnd.in-toto+json"), err: manifest.ErrDockerIncompatible},
		{name: "subject", in: func() ocispec.Manifest {
			m := ociManifest(ocispec.MediaTypeImageLayerGzip)
			m.Subject = &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("s"), Size: 1}
			return m
		}(), err: manifest.ErrDockerIncompatible},
		{name: "artifact", in: func() ocispec.Manifest {
			m := ociManifest()
			m.ArtifactType, m.Config.MediaType = "application/vnd.example.sbom", ocispec.MediaTypeEmptyJSON
			return m
		}(), err: manifest.ErrDockerIncompatible},
		{name: "artifact config", in: func() ocispec.Manifest {
			m := ociManifest()
			m.Config.MediaType = "application/vnd.cncf.helm.config.v1+json"
			return m
		}(), err: manifest.ErrDockerIncompatible},
		{name: "an index", in: func() ocispec.Manifest {
			m := ociManifest()
			m.MediaType = ocispec.MediaTypeImageIndex
			return m
		}(), err: manifest.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := manifest.ToDocker(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("ToDocker: %v, want %v mentioning %q", err, tc.err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mt, ct, layers := layerTypes(t, b.Data)
			if mt != manifest.DockerManifest || ct != manifest.DockerConfig || !reflect.DeepEqual(layers, tc.layers) {
				t.Errorf("ToDocker: %s with config %s and layers %v; want layers %v", mt, ct, layers, tc.layers)
			}
			if d, err := manifest.Describe(b.Data); err != nil || !reflect.DeepEqual(d, b.Descriptor) {
				t.Errorf("descriptor %+v, Describe says %+v, %v", b.Descriptor, d, err)
			}
			if !strings.Contains(string(b.Data), `"annotations":{"k":"v"}`) {
				t.Errorf("annotations lost: %s", b.Data)
			}
			// Converting back gives the OCI manifest byte for byte, so an
			// image pulled as Docker and stored as OCI keeps its OCI digest.
			if tc.in.MediaType == ocispec.MediaTypeImageManifest {
				var dm ocispec.Manifest
				if err := json.Unmarshal(b.Data, &dm); err != nil {
					t.Fatal(err)
				}
				back, err := manifest.FromDocker(dm)
				if err != nil {
					t.Fatal(err)
				}
				orig, _ := json.Marshal(tc.in)
				if string(back.Data) != string(orig) {
					t.Errorf("round trip:\n got %s\nwant %s", back.Data, orig)
				}
			}
		})
	}
	// The input is not modified.
	in := ociManifest(ocispec.MediaTypeImageLayerGzip)
	if _, err := manifest.ToDocker(in); err != nil || in.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip || in.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("ToDocker modified its input: %+v, %v", in, err)
	}
}

func TestFromDocker(t *testing.T) {
	docker := func(layers ...string) ocispec.Manifest {
		m := ociManifest(layers...)
		m.MediaType, m.Config.MediaType = manifest.DockerManifest, manifest.DockerConfig
		return m
	}
	for _, tc := range []struct {
		name   string
		in     ocispec.Manifest
		layers []string
		err    bool
	}{
		{name: "gzip, tar, foreign", in: docker(manifest.DockerLayerGzip, manifest.DockerLayerTar, manifest.DockerLayerForeign),
			layers: []string{ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayer, ociForeign}},
		// A Docker manifest with zstd layers is the mix containerd refuses;
		// as OCI it is valid.
		{name: "zstd in a Docker manifest", in: docker(ocispec.MediaTypeImageLayerZstd), layers: []string{ocispec.MediaTypeImageLayerZstd}},
		{name: "plugin config", in: func() ocispec.Manifest {
			m := docker(manifest.DockerLayerGzip)
			m.Config.MediaType = "application/vnd.docker.plugin.v1+json"
			return m
		}(), err: true},
		{name: "unknown layer", in: docker("application/octet-stream"), err: true},
	} {
		b, err := manifest.FromDocker(tc.in)
		if tc.err {
			if !errors.Is(err, manifest.ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		mt, ct, layers := layerTypes(t, b.Data)
		if mt != ocispec.MediaTypeImageManifest || ct != ocispec.MediaTypeImageConfig || !reflect.DeepEqual(layers, tc.layers) {
			t.Errorf("%s: FromDocker gave %s, %s, %v; want layers %v", tc.name, mt, ct, layers, tc.layers)
		}
	}
}

func TestDockerIndex(t *testing.T) {
	entry := func(mt string, p *ocispec.Platform) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: mt, Digest: digest.FromString(mt), Size: 3, Platform: p}
	}
	linux := &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	idx := func(entries ...ocispec.Descriptor) ocispec.Index {
		i := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: entries}
		i.SchemaVersion = 2
		return i
	}
	for _, tc := range []struct {
		name string
		fn   func(ocispec.Index) (manifest.Blob, error)
		in   ocispec.Index
		want string // media type of the result; "" for an error
	}{
		{"to Docker", manifest.ToDockerIndex, idx(entry(manifest.DockerManifest, linux)), manifest.DockerManifestList},
		{"to Docker, empty", manifest.ToDockerIndex, idx(), manifest.DockerManifestList},
		{"to Docker, entry not converted", manifest.ToDockerIndex, idx(entry(ocispec.MediaTypeImageManifest, linux)), ""},
		{"to Docker, entry without platform", manifest.ToDockerIndex, idx(entry(manifest.DockerManifest, nil)), ""},
		{"to Docker, nested index", manifest.ToDockerIndex, idx(entry(ocispec.MediaTypeImageIndex, linux)), ""},
		{"to Docker, with subject", manifest.ToDockerIndex, func() ocispec.Index {
			i := idx()
			i.Subject = &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("s"), Size: 1}
			return i
		}(), ""},
		{"from Docker", manifest.FromDockerIndex, idx(entry(ocispec.MediaTypeImageManifest, linux), entry(ocispec.MediaTypeImageIndex, nil)), ocispec.MediaTypeImageIndex},
		{"from Docker, entry not converted", manifest.FromDockerIndex, idx(entry(manifest.DockerManifest, linux)), ""},
		{"from Docker, not an index", manifest.FromDockerIndex, func() ocispec.Index {
			i := idx()
			i.MediaType = manifest.DockerManifest
			return i
		}(), ""},
	} {
		b, err := tc.fn(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: no error", tc.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if mt, err := manifest.Sniff(b.Data); err != nil || mt != tc.want || b.Descriptor.MediaType != tc.want || b.Descriptor.Digest != digest.FromBytes(b.Data) {
			t.Errorf("%s: %s is %q (%v), descriptor %+v; want %s", tc.name, b.Data, mt, err, b.Descriptor, tc.want)
		}
		if children, err := manifest.Children(b.Data, tc.want); err != nil || len(children) != len(tc.in.Manifests) {
			t.Errorf("%s: children %v, %v", tc.name, children, err)
		}
	}
}
