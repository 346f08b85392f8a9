package main

import (
	"strings"
	"testing"

	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestRegistryRoot(t *testing.T) {
	for _, tc := range []struct {
		loc  transport.Location
		root string
		ok   bool
	}{
		{transport.Location{Kind: transport.Registry, Ref: "127.0.0.1:5000"}, "127.0.0.1:5000", true},
		{transport.Location{Kind: transport.Registry, Ref: "localhost:5000"}, "localhost:5000", true},
		{transport.Location{Kind: transport.Registry, Ref: "registry.example.com"}, "registry.example.com", true},
		{transport.Location{Kind: transport.Registry, Ref: "registry:5000/"}, "registry:5000", true},
		{transport.Location{Kind: transport.Registry, Ref: "registry.example.com/mirror/team/"}, "registry.example.com/mirror/team", true},
		{transport.Location{Kind: transport.Registry, Ref: "busybox"}, "", false},
		{transport.Location{Kind: transport.Registry, Ref: "busybox:1"}, "", false},
		{transport.Location{Kind: transport.Registry, Ref: "127.0.0.1:5000/app:1"}, "", false},
		{transport.Location{Kind: transport.Registry, Ref: "127.0.0.1:5000/app"}, "", false},
		{transport.Location{Kind: transport.Registry, Ref: "reg.example.com:latest"}, "", false},
		{transport.Location{Kind: transport.Registry, Ref: "/"}, "", false},
		{transport.Location{Kind: transport.OCIArchive, Path: "x.tar"}, "", false},
	} {
		root, ok := registryRoot(tc.loc)
		if ok != tc.ok || (ok && root != tc.root) {
			t.Errorf("registryRoot(%v) = %q, %v; want %q, %v", tc.loc, root, ok, tc.root, tc.ok)
		}
	}
}

func TestRootedName(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		scoped     bool
	}{
		{"quay.io/org/app:1", "127.0.0.1:5000/org/app:1", false},
		{"quay.io/org/app:1", "127.0.0.1:5000/quay.io/org/app:1", true},
		{"docker.io/library/busybox:latest", "127.0.0.1:5000/library/busybox:latest", false},
		{"quay.io/org/app@sha256:0123456789012345678901234567890123456789012345678901234567890123", "127.0.0.1:5000/org/app@sha256:0123456789012345678901234567890123456789012345678901234567890123", false},
	} {
		got, err := rootedName("127.0.0.1:5000", store.Image{Name: tc.name}, tc.scoped)
		if err != nil || got != tc.want {
			t.Errorf("rootedName(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := rootedName("h.example", store.Image{}, false); err == nil {
		t.Error("an unnamed image got a name")
	}
}

func TestParseImageList(t *testing.T) {
	refs, err := parseImageList(strings.NewReader("# images for site B\n\nquay.io/org/app:1   # pinned\n  docker://reg.example.com/x@sha256:0123456789012345678901234567890123456789012345678901234567890123\n"), "list")
	if err != nil || len(refs) != 2 || refs[0] != "quay.io/org/app:1" {
		t.Fatalf("refs %q, %v", refs, err)
	}
	for _, bad := range []string{"a b\n", "unknown://x\n"} {
		if _, err := parseImageList(strings.NewReader(bad), "list"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRootedNamesRefusesCollisions(t *testing.T) {
	a := store.Image{Name: "docker.io/team/app:1", Descriptor: ocispec.Descriptor{Digest: "sha256:aa"}}
	b := store.Image{Name: "quay.io/team/app:1", Descriptor: ocispec.Descriptor{Digest: "sha256:bb"}}
	if _, err := rootedNames("h.example", []store.Image{a, b}, false); err == nil || !strings.Contains(err.Error(), "--scoped") {
		t.Errorf("collision not refused: %v", err)
	}
	names, err := rootedNames("h.example", []store.Image{a, b, a}, true)
	if err != nil || names[0] != "h.example/docker.io/team/app:1" || names[1] != "h.example/quay.io/team/app:1" {
		t.Errorf("scoped: %v, %v", names, err)
	}
}
