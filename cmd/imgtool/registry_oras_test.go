package main_test

import (
	"context"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	orasremote "oras.land/oras-go/v2/registry/remote"
)

// TestOrasArtifactsAndReferrers pushes artifacts that refer to an image
// with oras-go (the library under the oras CLI) and finds them through
// the referrers API, filtered by artifact type. oras decides from the
// OCI-Subject header whether the registry has that API; had it fallen
// back to the older tag schema, a sha256-<hex> tag would appear.
func TestOrasArtifactsAndReferrers(t *testing.T) {
	ctx := context.Background()
	srv := startRegistry(t, t.TempDir())
	img := pushRandom(t, srv.addr+"/oras/app:1")
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	subject := ocispec.Descriptor{MediaType: string(mt), Digest: digest.Digest(digestOf(t, img)), Size: int64(len(raw))}

	repo, err := orasremote.NewRepository(srv.addr + "/oras/app")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	sbom := []byte(`{"spdxVersion":"SPDX-2.3"}`)
	layer, err := oras.PushBytes(ctx, repo, "application/spdx+json", sbom)
	if err != nil {
		t.Fatal(err)
	}
	arts := map[string]ocispec.Descriptor{}
	for _, at := range []string{"application/vnd.example.sbom", "application/vnd.example.sig"} {
		d, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, at,
			oras.PackManifestOptions{Subject: &subject, Layers: []ocispec.Descriptor{layer}})
		if err != nil {
			t.Fatalf("oras push %s: %v", at, err)
		}
		arts[at] = d
	}
	var got []ocispec.Descriptor
	err = repo.Referrers(ctx, subject, "application/vnd.example.sbom", func(r []ocispec.Descriptor) error {
		got = append(got, r...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Digest != arts["application/vnd.example.sbom"].Digest || got[0].ArtifactType != "application/vnd.example.sbom" {
		t.Fatalf("referrers of type sbom: %+v", got)
	}
	var tags []string
	if err := repo.Tags(ctx, "", func(t []string) error { tags = append(tags, t...); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tags, []string{"1"}) {
		t.Errorf("tags %v: oras fell back to the referrers tag schema", tags)
	}
	back, err := content.FetchAll(ctx, repo, layer)
	if err != nil || string(back) != string(sbom) {
		t.Fatalf("fetch the artifact's blob: %q, %v", back, err)
	}
}
