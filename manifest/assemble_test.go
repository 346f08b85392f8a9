package manifest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/manifest"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// importImage does what `imgtool import --change ... ` does with a layer, at
// the given clock time.
func importImage(t *testing.T, l manifest.LayerDesc, now time.Time, epoch *time.Time) manifest.ImageBlobs {
	t.Helper()
	cfg := ocispec.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"A=b"}, Labels: map[string]string{"z": "1", "a": "two words"}}
	img, err := manifest.Append(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Config: cfg},
		[]manifest.Step{{Layer: &l, CreatedBy: "imgtool import"}}, manifest.AppendOptions{Created: now, SourceDateEpoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	b, err := manifest.Image(img, []manifest.LayerDesc{l}, manifest.ImageOptions{Annotations: map[string]string{"b": "2", "a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImageReproducible: with SOURCE_DATE_EPOCH, builds at different times
// on hosts in different time zones give byte-identical blobs, and those
// bytes are exactly these (a change to them changes every imported image's
// digest, so it should be deliberate).
func TestImageReproducible(t *testing.T) {
	l := testLayer("rootfs", ocispec.MediaTypeImageLayerZstd)
	epoch, err := manifest.ParseSourceDateEpoch("1700000000")
	if err != nil {
		t.Fatal(err)
	}
	a := importImage(t, l, time.Now(), epoch)
	b := importImage(t, l, time.Now().Add(time.Hour).In(time.FixedZone("X", -7*3600)), epoch)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two builds differ:\n%s\n%s\n%s\n%s", a.Config.Data, b.Config.Data, a.Manifest.Data, b.Manifest.Data)
	}
	wantConfig := `{"created":"2023-11-14T22:13:20Z","architecture":"amd64","os":"linux",` +
		`"config":{"Env":["A=b"],"Cmd":["/bin/sh"],"Labels":{"a":"two words","z":"1"}},` +
		`"rootfs":{"type":"layers","diff_ids":["` + l.DiffID.String() + `"]},` +
		`"history":[{"created":"2023-11-14T22:13:20Z","created_by":"imgtool import"}]}`
	if got := string(a.Config.Data); got != wantConfig {
		t.Errorf("config:\n got %s\nwant %s", got, wantConfig)
	}
	wantManifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digest.FromString(wantConfig).String() + `","size":` + strconv.Itoa(len(wantConfig)) + `},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"` + l.Digest.String() + `","size":6}],` +
		`"annotations":{"a":"1","b":"2"}}`
	if got := string(a.Manifest.Data); got != wantManifest {
		t.Errorf("manifest:\n got %s\nwant %s", got, wantManifest)
	}
	md := a.Manifest.Descriptor
	if md.Digest != digest.FromBytes(a.Manifest.Data) || md.Size != int64(len(a.Manifest.Data)) || md.MediaType != ocispec.MediaTypeImageManifest ||
		md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != "amd64" {
		t.Errorf("manifest descriptor %+v does not describe %s", md, a.Manifest.Data)
	}
	// Without SOURCE_DATE_EPOCH the time is the clock's, so builds differ.
	if c := importImage(t, l, time.Unix(1, 0), nil); c.Manifest.Descriptor.Digest == a.Manifest.Descriptor.Digest {
		t.Error("a build without SOURCE_DATE_EPOCH ignored its clock")
	}
}

func TestImage(t *testing.T) {
	l1, l2 := testLayer("one", ocispec.MediaTypeImageLayerZstd), testLayer("two", ocispec.MediaTypeImageLayerGzip)
	good := func() ocispec.Image {
		return ocispec.Image{
			Platform: ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"},
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l1.DiffID, l2.DiffID}},
			History:  []ocispec.History{{CreatedBy: "a"}, {CreatedBy: "ENV", EmptyLayer: true}, {CreatedBy: "b"}},
		}
	}
	subject := &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("s"), Size: 1}
	for _, tc := range []struct {
		name   string
		cfg    func(*ocispec.Image)
		layers []manifest.LayerDesc
		opts   manifest.ImageOptions
		err    bool
	}{
		{name: "two layers", layers: []manifest.LayerDesc{l1, l2}},
		{name: "with subject", layers: []manifest.LayerDesc{l1, l2}, opts: manifest.ImageOptions{Subject: subject}},
		{name: "scratch image without layers", cfg: func(c *ocispec.Image) { c.RootFS.DiffIDs, c.History = nil, nil }},
		{name: "layers out of order", layers: []manifest.LayerDesc{l2, l1}, err: true},
		{name: "layer missing", layers: []manifest.LayerDesc{l1}, err: true},
		{name: "history short of a layer", layers: []manifest.LayerDesc{l1, l2}, cfg: func(c *ocispec.Image) { c.History = c.History[:2] }, err: true},
		{name: "no os", layers: []manifest.LayerDesc{l1, l2}, cfg: func(c *ocispec.Image) { c.OS = "" }, err: true},
		{name: "rootfs type unset", layers: []manifest.LayerDesc{l1, l2}, cfg: func(c *ocispec.Image) { c.RootFS.Type = "" }, err: true},
		{name: "bad subject", layers: []manifest.LayerDesc{l1, l2}, opts: manifest.ImageOptions{Subject: &ocispec.Descriptor{Digest: "sha256:x"}}, err: true},
		{name: "layer without media type", layers: []manifest.LayerDesc{l1, {Descriptor: ocispec.Descriptor{Digest: l2.Digest, Size: 1}, DiffID: l2.DiffID}}, err: true},
		{name: "manifest as a layer", layers: []manifest.LayerDesc{l1, {Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: l2.Digest, Size: 1}, DiffID: l2.DiffID}}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			b, err := manifest.Image(cfg, tc.layers, tc.opts)
			if tc.err {
				if !errors.Is(err, manifest.ErrInvalid) {
					t.Fatalf("Image: %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// What Image writes, the readers of this package accept and
			// read back as written.
			if _, err := manifest.ParseConfig(b.Config.Data); err != nil {
				t.Errorf("ParseConfig of our own config: %v", err)
			}
			if !bytes.Contains(b.Config.Data, []byte(`"diff_ids":[`)) {
				t.Errorf("config %s: diff_ids must be an array", b.Config.Data)
			}
			d, err := manifest.Describe(b.Manifest.Data)
			if err != nil || d.Digest != b.Manifest.Descriptor.Digest || d.MediaType != b.Manifest.Descriptor.MediaType {
				t.Errorf("Describe(manifest) = %+v, %v; want %+v", d, err, b.Manifest.Descriptor)
			}
			children, err := manifest.Children(b.Manifest.Data, d.MediaType)
			if err != nil {
				t.Fatal(err)
			}
			want := []ocispec.Descriptor{b.Config.Descriptor}
			for _, l := range tc.layers {
				want = append(want, l.Descriptor)
			}
			if tc.opts.Subject != nil {
				want = append(want, *tc.opts.Subject)
			}
			if !reflect.DeepEqual(children, want) {
				t.Errorf("children %+v, want %+v", children, want)
			}
			if b.Config.Descriptor.Digest != digest.FromBytes(b.Config.Data) || b.Config.Descriptor.MediaType != ocispec.MediaTypeImageConfig {
				t.Errorf("config descriptor %+v", b.Config.Descriptor)
			}
			if p := b.Manifest.Descriptor.Platform; p == nil || manifest.FormatPlatform(*p) != "linux/arm/v7" {
				t.Errorf("manifest descriptor platform %+v", p)
			}
		})
	}
}

func TestIndex(t *testing.T) {
	amd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("amd64"), Size: 10, Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	arm := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("arm64"), Size: 11, Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64"}}
	for _, tc := range []struct {
		name        string
		manifests   []ocispec.Descriptor
		annotations map[string]string
		want        string
		err         bool
	}{
		{name: "empty", want: `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`},
		{name: "two platforms", manifests: []ocispec.Descriptor{amd, arm}, annotations: map[string]string{"org.opencontainers.image.ref.name": "1"},
			want: `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
				`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + amd.Digest.String() + `","size":10,"platform":{"architecture":"amd64","os":"linux"}},` +
				`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + arm.Digest.String() + `","size":11,"platform":{"architecture":"arm64","os":"linux"}}],` +
				`"annotations":{"org.opencontainers.image.ref.name":"1"}}`},
		{name: "bad entry", manifests: []ocispec.Descriptor{amd, {MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:../x", Size: 1}}, err: true},
	} {
		b, err := manifest.Index(tc.manifests, tc.annotations)
		if tc.err {
			if !errors.Is(err, manifest.ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
			}
			continue
		}
		if err != nil || string(b.Data) != tc.want || b.Descriptor.Digest != digest.FromString(tc.want) || b.Descriptor.MediaType != ocispec.MediaTypeImageIndex {
			t.Errorf("%s: Index = %s %+v, %v\nwant %s", tc.name, b.Data, b.Descriptor, err, tc.want)
			continue
		}
		idx := ocispec.Index{Manifests: tc.manifests}
		if len(tc.manifests) > 0 {
			if got, err := manifest.Select(idx, ocispec.Platform{OS: "linux", Architecture: "arm64"}); err != nil || got.Digest != arm.Digest {
				t.Errorf("%s: Select from the index = %v, %v", tc.name, got.Digest, err)
			}
		}
	}
}

// TestDockerImageKeepsDockerFields: Healthcheck, OnBuild and Shell, which
// ocispec.Image cannot hold, survive in the config blob, and the runtime
// config is written once.
func TestDockerImageKeepsDockerFields(t *testing.T) {
	cfg := dockerspec.DockerOCIImage{Image: ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}}
	cfg.Config.Cmd = []string{"/bin/sh"}
	cfg.Config.Shell = []string{"/bin/bash", "-c"}
	cfg.Config.OnBuild = []string{"RUN true"}
	cfg.Config.Healthcheck = &dockerspec.HealthcheckConfig{Test: []string{"CMD", "true"}, Retries: 3}
	blobs, err := manifest.DockerImage(cfg, nil, manifest.ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var back dockerspec.DockerOCIImage
	if err := json.Unmarshal(blobs.Config.Data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Config, cfg.Config) {
		t.Errorf("config round trip:\n got %+v\nwant %+v", back.Config, cfg.Config)
	}
	if n := strings.Count(string(blobs.Config.Data), `"config"`); n != 1 {
		t.Errorf("config written %d times: %s", n, blobs.Config.Data)
	}
	cfg.Platform.OS = ""
	if _, err := manifest.DockerImage(cfg, nil, manifest.ImageOptions{}); !errors.Is(err, manifest.ErrInvalid) {
		t.Errorf("config without os: %v, want ErrInvalid", err)
	}
}
