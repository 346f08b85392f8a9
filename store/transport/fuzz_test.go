package transport

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgtool/imgtool/manifest"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func tarOf(t testing.TB, members map[string]string, links map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, body := range members {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Size: int64(len(body)), Mode: 0o644})
		tw.Write([]byte(body))
	}
	for n, target := range links {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: n, Linkname: target})
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func seedArchives(t testing.TB) [][]byte {
	cfg, layer := `{"architecture":"amd64","os":"linux"}`, "layer bytes"
	m, _ := json.Marshal(ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString(cfg), Size: int64(len(cfg))},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString(layer), Size: int64(len(layer))}}})
	idx, _ := json.Marshal(ocispec.Index{Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m)),
		Annotations: map[string]string{annotationImageName: "docker.io/library/x:1"}}}})
	oci := tarOf(t, map[string]string{
		"index.json": string(idx), "oci-layout": `{"imageLayoutVersion":"1.0.0"}`,
		"blobs/sha256/" + digest.FromBytes(m).Encoded():      string(m),
		"blobs/sha256/" + digest.FromString(cfg).Encoded():   cfg,
		"blobs/sha256/" + digest.FromString(layer).Encoded(): layer,
	}, nil)
	legacy := tarOf(t, map[string]string{
		"manifest.json": `[{"Config":"c.json","RepoTags":["x:1"],"Layers":["a/layer.tar","b/layer.tar"]}]`,
		"c.json":        cfg, "a/layer.tar": layer,
	}, map[string]string{"b/layer.tar": "../a/layer.tar", "loop": "loop"})
	return [][]byte{oci, legacy}
}

// readEverything reads every image of an archive the way Copy does.
func readEverything(ctx context.Context, path string) error {
	src, err := openArchiveSource(Location{Kind: OCIArchive, Path: path})
	if err != nil {
		return err
	}
	defer src.Close()
	images, err := src.Images(ctx)
	if err != nil {
		return err
	}
	for _, im := range images {
		raw, err := fetchManifest(ctx, src, im.Descriptor)
		if err != nil {
			return err
		}
		children, err := manifest.Children(raw, im.Descriptor.MediaType)
		if err != nil {
			return err
		}
		for _, c := range children {
			rc, err := src.Fetch(ctx, c)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func TestArchiveSeedsRead(t *testing.T) {
	for i, a := range seedArchives(t) {
		p := filepath.Join(t.TempDir(), "a.tar")
		os.WriteFile(p, a, 0o644)
		if err := readEverything(context.Background(), p); err != nil {
			t.Errorf("seed %d: %v", i, err)
		}
	}
}

// FuzzArchive: a hostile archive gives an error, never a panic, a hang or
// content that does not match its digest.
func FuzzArchive(f *testing.F) {
	for _, a := range seedArchives(f) {
		f.Add(a)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.tar")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		readEverything(context.Background(), p)
	})
}
