package manifest_test

import (
	"errors"
	"testing"

	"github.com/imgtool/imgtool/manifest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParsePlatform(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ocispec.Platform
		err  bool
	}{
		{in: "linux/amd64", want: ocispec.Platform{OS: "linux", Architecture: "amd64"}},
		{in: "linux/arm64/v8", want: ocispec.Platform{OS: "linux", Architecture: "arm64"}},
		{in: "linux/arm/v7", want: ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{in: "Linux/x86_64", want: ocispec.Platform{OS: "linux", Architecture: "amd64"}},
		{in: "linux/aarch64", want: ocispec.Platform{OS: "linux", Architecture: "arm64"}},
		{in: "", want: manifest.Native()},
		{in: "linux", err: true},
		{in: "linux//v7", err: true},
		{in: "a/b/c/d", err: true},
	} {
		got, err := manifest.ParsePlatform(tc.in)
		if (err != nil) != tc.err || (!tc.err && (got.OS != tc.want.OS || got.Architecture != tc.want.Architecture || got.Variant != tc.want.Variant)) {
			t.Errorf("ParsePlatform(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestSelect(t *testing.T) {
	d := func(os, arch, variant string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(os + arch + variant), Size: 1,
			Platform: &ocispec.Platform{OS: os, Architecture: arch, Variant: variant}}
	}
	idx := ocispec.Index{Manifests: []ocispec.Descriptor{
		d("linux", "amd64", ""), d("linux", "arm", "v6"), d("linux", "arm", "v7"), d("linux", "arm64", "v8"),
		{MediaType: "application/vnd.example+json", Digest: digest.FromString("attestation"), Size: 1, Platform: &ocispec.Platform{OS: "unknown", Architecture: "unknown"}},
	}}
	for _, tc := range []struct {
		want ocispec.Platform
		got  ocispec.Descriptor
		err  bool
	}{
		{want: ocispec.Platform{OS: "linux", Architecture: "amd64"}, got: idx.Manifests[0]},
		{want: ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, got: idx.Manifests[2]},
		{want: ocispec.Platform{OS: "linux", Architecture: "arm64"}, got: idx.Manifests[3]},
		{want: ocispec.Platform{OS: "linux", Architecture: "arm"}, got: idx.Manifests[1]},
		{want: ocispec.Platform{OS: "windows", Architecture: "amd64"}, err: true},
		{want: ocispec.Platform{OS: "unknown", Architecture: "unknown"}, err: true},
	} {
		got, err := manifest.Select(idx, tc.want)
		if tc.err {
			if !errors.Is(err, manifest.ErrNoPlatform) {
				t.Errorf("Select(%+v): %v, want ErrNoPlatform", tc.want, err)
			}
			continue
		}
		if err != nil || got.Digest != tc.got.Digest {
			t.Errorf("Select(%+v) = %s, %v; want %s", tc.want, got.Digest, err, tc.got.Digest)
		}
	}
}

func TestSniffAndChildren(t *testing.T) {
	cfg := `{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digest.FromString("c").String() + `","size":1}`
	layer := `{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + digest.FromString("l").String() + `","size":2}`
	for _, tc := range []struct {
		name, raw, mt string
		children      int
		err           bool
	}{
		{"oci manifest", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + cfg + `,"layers":[` + layer + `]}`, ocispec.MediaTypeImageManifest, 2, false},
		{"manifest without mediaType", `{"schemaVersion":2,"config":` + cfg + `,"layers":[]}`, ocispec.MediaTypeImageManifest, 1, false},
		{"docker manifest", `{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` + digest.FromString("c").String() + `","size":1},"layers":[]}`, manifest.DockerManifest, 1, false},
		{"index", `{"schemaVersion":2,"manifests":[]}`, ocispec.MediaTypeImageIndex, 0, false},
		{"schema 1", `{"schemaVersion":1}`, "", 0, true},
		{"not json", `{`, "", 0, true},
		{"hostile digest", `{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:../../etc/passwd","size":1},"layers":[]}`, ocispec.MediaTypeImageManifest, 0, true},
		{"negative size", `{"schemaVersion":2,"config":{"mediaType":"x","digest":"` + digest.FromString("c").String() + `","size":-1},"layers":[]}`, ocispec.MediaTypeImageManifest, 0, true},
	} {
		mt, err := manifest.Sniff([]byte(tc.raw))
		if err == nil {
			var children []ocispec.Descriptor
			children, err = manifest.Children([]byte(tc.raw), mt)
			if err == nil && len(children) != tc.children {
				t.Errorf("%s: %d children, want %d", tc.name, len(children), tc.children)
			}
		}
		if (err != nil) != tc.err || (!tc.err && mt != tc.mt) {
			t.Errorf("%s: media type %q, error %v; want %q (error %v)", tc.name, mt, err, tc.mt, tc.err)
		}
	}
}

// FuzzChildren: whatever a registry sends, parsing never panics and every
// descriptor it returns is safe to name a file by.
func FuzzChildren(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:` + digest.FromString("").Encoded() + `","size":1},"layers":[]}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha512:00","size":1}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		mt, err := manifest.Sniff(raw)
		if err != nil {
			return
		}
		children, err := manifest.Children(raw, mt)
		if err != nil {
			return
		}
		for _, c := range children {
			if c.Digest.Validate() != nil || c.Size < 0 {
				t.Fatalf("unsafe descriptor passed validation: %+v", c)
			}
		}
	})
}
