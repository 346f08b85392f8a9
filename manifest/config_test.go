package manifest_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/imgtool/imgtool/manifest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testLayer is a layer whose digests are made up from name.
func testLayer(name, mediaType string) manifest.LayerDesc {
	return manifest.LayerDesc{
		Descriptor: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromString("blob " + name), Size: int64(len(name))},
		DiffID:     digest.FromString("tar " + name),
	}
}

func ptr[T any](v T) *T { return &v }

func TestAppend(t *testing.T) {
	epoch := time.Unix(1700000000, 0).UTC()
	now := time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
	l1, l2 := testLayer("one", ocispec.MediaTypeImageLayerZstd), testLayer("two", ocispec.MediaTypeImageLayerZstd)
	linux := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	baseCreated := time.Unix(1600000000, 0).UTC()
	base := ocispec.Image{
		Platform: linux,
		Created:  &baseCreated,
		Config:   ocispec.ImageConfig{Env: []string{"PATH=/bin"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l1.DiffID}},
		History:  []ocispec.History{{Created: &baseCreated, CreatedBy: "base"}},
	}
	for _, tc := range []struct {
		name  string
		base  ocispec.Image
		steps []manifest.Step
		opts  manifest.AppendOptions
		want  ocispec.Image
		err   error
	}{{
		name:  "import from scratch with SOURCE_DATE_EPOCH ignores the clock",
		base:  ocispec.Image{Platform: linux},
		steps: []manifest.Step{{Layer: &l1, CreatedBy: "imgtool import", Comment: "rootfs"}},
		opts:  manifest.AppendOptions{Created: now, SourceDateEpoch: &epoch},
		want: ocispec.Image{
			Platform: linux, Created: &epoch,
			RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l1.DiffID}},
			History: []ocispec.History{{Created: &epoch, CreatedBy: "imgtool import", Comment: "rootfs"}},
		},
	}, {
		name:  "without SOURCE_DATE_EPOCH the clock is recorded in UTC",
		base:  ocispec.Image{Platform: linux},
		steps: []manifest.Step{{Layer: &l1, CreatedBy: "imgtool import"}},
		opts:  manifest.AppendOptions{Created: now},
		want: ocispec.Image{
			Platform: linux, Created: ptr(now.UTC()),
			RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l1.DiffID}},
			History: []ocispec.History{{Created: ptr(now.UTC()), CreatedBy: "imgtool import"}},
		},
	}, {
		name:  "no time at all records none",
		base:  ocispec.Image{Platform: linux},
		steps: []manifest.Step{{Layer: &l1}},
		want: ocispec.Image{
			Platform: linux,
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l1.DiffID}},
			History:  []ocispec.History{{}},
		},
	}, {
		name:  "config-only steps are empty layers; base history keeps its times",
		base:  base,
		steps: []manifest.Step{{CreatedBy: "ENV A=b"}, {Layer: &l2, CreatedBy: "COPY . /"}},
		opts:  manifest.AppendOptions{SourceDateEpoch: &epoch},
		want: ocispec.Image{
			Platform: linux, Created: &epoch, Config: base.Config,
			RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l1.DiffID, l2.DiffID}},
			History: []ocispec.History{
				{Created: &baseCreated, CreatedBy: "base"},
				{Created: &epoch, CreatedBy: "ENV A=b", EmptyLayer: true},
				{Created: &epoch, CreatedBy: "COPY . /"},
			},
		},
	}, {
		name:  "base without history gets entries for its layers",
		base:  ocispec.Image{Platform: linux, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l1.DiffID}}},
		steps: []manifest.Step{{Layer: &l2}},
		want: ocispec.Image{
			Platform: linux,
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l1.DiffID, l2.DiffID}},
			History:  []ocispec.History{{Comment: "imgtool: history of this layer is missing from the base image"}, {}},
		},
	}, {
		name: "base history with more layers than diff_ids",
		base: ocispec.Image{Platform: linux, RootFS: ocispec.RootFS{Type: "layers"}, History: []ocispec.History{{CreatedBy: "x"}}},
		err:  manifest.ErrInvalid,
	}, {
		name: "unknown rootfs type",
		base: ocispec.Image{Platform: linux, RootFS: ocispec.RootFS{Type: "zfs"}},
		err:  manifest.ErrInvalid,
	}, {
		name:  "malformed diff_id",
		base:  ocispec.Image{Platform: linux},
		steps: []manifest.Step{{Layer: &manifest.LayerDesc{DiffID: "sha256:nothex"}}},
		err:   digest.ErrDigestInvalidLength,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := manifest.Append(tc.base, tc.steps, tc.opts)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Append: error %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Append:\n got %s\nwant %s", jsonOf(t, got), jsonOf(t, tc.want))
			}
		})
	}
}

// TestAppendLeavesBaseAlone: the base's arrays are often shared with the
// caller's copy of the base image, and must not change under it.
func TestAppendLeavesBaseAlone(t *testing.T) {
	l1, l2 := testLayer("one", ocispec.MediaTypeImageLayerZstd), testLayer("two", ocispec.MediaTypeImageLayerZstd)
	ids := make([]digest.Digest, 1, 4) // spare capacity: a careless append would write into it
	ids[0] = l1.DiffID
	hist := make([]ocispec.History, 1, 4)
	base := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: ids}, History: hist}
	a, err := manifest.Append(base, []manifest.Step{{Layer: &l2, CreatedBy: "a"}}, manifest.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := manifest.Append(base, []manifest.Step{{Layer: &l1, CreatedBy: "b"}}, manifest.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.RootFS.DiffIDs[1] != l2.DiffID || a.History[1].CreatedBy != "a" || b.History[1].CreatedBy != "b" || len(base.History) != 1 {
		t.Errorf("appends share arrays: a %v %v, b %v", a.RootFS.DiffIDs, a.History, b.History)
	}
}

func TestParseSourceDateEpoch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *time.Time
		err  bool
	}{
		{in: "", want: nil},
		{in: "0", want: ptr(time.Unix(0, 0).UTC())},
		{in: "1700000000", want: ptr(time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC))},
		{in: "-1", err: true},
		{in: "+5", err: true},
		{in: "1.5", err: true},
		{in: "2023-11-14", err: true},
		{in: " 1", err: true},
	} {
		got, err := manifest.ParseSourceDateEpoch(tc.in)
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSourceDateEpoch(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseConfig(t *testing.T) {
	id := digest.FromString("x").String()
	for _, tc := range []struct {
		name, raw string
		err       bool
	}{
		{"minimal", `{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":["` + id + `"]}}`, false},
		{"no layers", `{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}`, false},
		{"history need not match", `{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x"}]}`, false},
		{"docker fields are tolerated", `{"os":"linux","architecture":"amd64","docker_version":"1","container_config":{},"rootfs":{"type":"layers","diff_ids":[]}}`, false},
		{"no os", `{"architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}`, true},
		{"no architecture", `{"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`, true},
		{"no rootfs", `{"os":"linux","architecture":"amd64"}`, true},
		{"rootfs type", `{"os":"linux","architecture":"amd64","rootfs":{"type":"snapshot","diff_ids":[]}}`, true},
		{"bad diff_id", `{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":["sha256:../../etc"]}}`, true},
		{"unknown algorithm", `{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":["md5:00"]}}`, true},
		{"not json", `{"os":`, true},
		{"not an object", `[]`, true},
		{"bad time", `{"created":"yesterday","os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}`, true},
	} {
		_, err := manifest.ParseConfig([]byte(tc.raw))
		if (err != nil) != tc.err || (err != nil && !errors.Is(err, manifest.ErrInvalid)) {
			t.Errorf("%s: error %v, want error %v (ErrInvalid)", tc.name, err, tc.err)
		}
	}
}

func TestLayers(t *testing.T) {
	l1, l2 := testLayer("one", ocispec.MediaTypeImageLayerGzip), testLayer("two", ocispec.MediaTypeImageLayerGzip)
	m := ocispec.Manifest{Layers: []ocispec.Descriptor{l1.Descriptor, l2.Descriptor}}
	cfg := ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l1.DiffID, l2.DiffID}}}
	got, err := manifest.Layers(m, cfg)
	if err != nil || !reflect.DeepEqual(got, []manifest.LayerDesc{l1, l2}) {
		t.Errorf("Layers = %+v, %v", got, err)
	}
	cfg.RootFS.DiffIDs = cfg.RootFS.DiffIDs[:1]
	if _, err := manifest.Layers(m, cfg); !errors.Is(err, manifest.ErrInvalid) {
		t.Errorf("Layers with a missing diff_id: %v, want ErrInvalid", err)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
