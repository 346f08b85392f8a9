package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestImportRefusesBadBundles(t *testing.T) {
	good, want := sampleBundle()
	goodTar := good.tar(t)
	corrupt := func(mutate func(b *testBundle)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			b, _ := sampleBundle()
			mutate(b)
			return b.tar(t)
		}
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T) []byte
		want string
	}{
		{"blob content does not match digest", corrupt(func(b *testBundle) {
			for i, m := range b.members {
				if string(m.data) == "arm64 layer" {
					b.members[i].data = []byte("ARM64 LAYER")
				}
			}
		}), "does not match its digest"},
		{"manifest content does not match digest", corrupt(func(b *testBundle) {
			for i, m := range b.members {
				if m.name == "blobs/sha256/"+want["tool"].Encoded() {
					b.members[i].data = bytes.Replace(m.data, []byte("schemaVersion"), []byte("schemaVersioN"), 1)
				}
			}
		}), "hashing to"},
		{"path traversal", corrupt(func(b *testBundle) {
			b.members = append(b.members, tarMember{name: "../../etc/passwd", typ: tar.TypeReg, data: []byte("x")})
		}), "path traversal"},
		{"traversal inside blobs", corrupt(func(b *testBundle) {
			b.members = append(b.members, tarMember{name: "blobs/sha256/../../../x", typ: tar.TypeReg, data: []byte("x")})
		}), "path traversal"},
		{"absolute name", corrupt(func(b *testBundle) {
			b.members = append(b.members, tarMember{name: "/etc/x", typ: tar.TypeReg, data: []byte("x")})
		}), "path traversal"},
		{"symlink", corrupt(func(b *testBundle) {
			b.members = append(b.members, tarMember{name: "blobs/sha256/evil", typ: tar.TypeSymlink, link: "/etc/passwd"})
		}), "not a regular file"},
		{"duplicate member", corrupt(func(b *testBundle) {
			b.members = append(b.members, b.members[0])
		}), "appears twice"},
		{"missing blob", corrupt(func(b *testBundle) {
			for i, m := range b.members {
				if string(m.data) == "amd64 layer" {
					b.members = append(b.members[:i], b.members[i+1:]...)
					break
				}
			}
		}), "neither in the bundle nor in the registry"},
		{"reserved repository name", corrupt(func(b *testBundle) {
			b.index.Manifests[1].Annotations[annotationImageName] = "registry.example/team/_layers:1"
		}), "invalid repository name"},
		{"name and digest disagree", corrupt(func(b *testBundle) {
			b.index.Manifests[3].Annotations[annotationImageName] = "registry.example/team/app@" + want["app"].String()
		}), "names registry.example/team/app@"},
		{"two registries, one repository and tag", corrupt(func(b *testBundle) {
			d := b.image(`{"architecture":"amd64","os":"linux","other":true}`, "other layer", nil)
			b.name("quay.example/team/app:1", d)
		}), "would both be team/app:1"},
		{"one blob, two sizes", corrupt(func(b *testBundle) {
			cfg := b.blob([]byte(`{"architecture":"amd64","os":"linux","y":1}`))
			cfg.MediaType = ocispec.MediaTypeImageConfig
			l := b.blob([]byte("shared layer"))
			l.MediaType, l.Size = ocispec.MediaTypeImageLayer, l.Size+1
			raw, _ := json.Marshal(ocispec.Manifest{Versioned: specsVersioned, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{l}})
			d := b.blob(raw)
			d.MediaType = ocispec.MediaTypeImageManifest
			b.name("registry.example/team/liar:1", d)
		}), "described with sizes"},
		{"no repository", corrupt(func(b *testBundle) {
			b.index.Manifests[0].Annotations = map[string]string{ocispec.AnnotationRefName: "1"}
		}), "no full reference"},
		{"truncated", func(t *testing.T) []byte { return goodTar[:len(goodTar)/2] }, "truncated"},
		{"truncated before index.json", func(t *testing.T) []byte {
			return goodTar[:bytes.Index(goodTar, []byte("index.json"))&^511]
		}, "without its end-of-archive marker"},
		{"no index.json", corrupt(func(b *testBundle) { b.noIndex = true }), "no index.json"},
		{"not a tar", func(t *testing.T) []byte { return []byte("hello, this is not a tar archive at all") }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drv := &countingDriver{StorageDriver: inmemory.New()}
			raw := tc.make(t)
			_, err := New(drv, Options{}).Import(context.Background(), bytes.NewReader(raw), int64(len(raw)), ImportOptions{})
			if err == nil || !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrBadBundle saying %q", err, tc.want)
			}
			if n := drv.writes.Load(); n != 0 {
				t.Errorf("a refused bundle made %d storage writes", n)
			}
		})
	}
}

func FuzzImport(f *testing.F) {
	b, _ := sampleBundle()
	f.Add(b.tar(f))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		drv := inmemory.New()
		// Whatever the input, Import must not panic; and when it refuses
		// the bundle nothing is written.
		if _, err := New(drv, Options{}).Import(context.Background(), bytes.NewReader(raw), int64(len(raw)), ImportOptions{}); err != nil {
			if entries, _ := drv.List(context.Background(), "/"); len(entries) != 0 && errors.Is(err, ErrBadBundle) {
				t.Fatalf("refused bundle left %v", entries)
			}
		}
	})
}
