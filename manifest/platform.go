package manifest

import (
	"fmt"
	"runtime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ParsePlatform parses "os/arch[/variant]" as docker's --platform does.
// An empty string yields the native platform.
func ParsePlatform(s string) (ocispec.Platform, error) {
	if s == "" {
		return Native(), nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return ocispec.Platform{}, fmt.Errorf("parse platform %q: want os/arch or os/arch/variant, such as linux/amd64", s)
	}
	for _, p := range parts {
		if p == "" {
			return ocispec.Platform{}, fmt.Errorf("parse platform %q: empty component", s)
		}
	}
	p := ocispec.Platform{OS: strings.ToLower(parts[0]), Architecture: strings.ToLower(parts[1])}
	if len(parts) == 3 {
		p.Variant = strings.ToLower(parts[2])
	}
	return Normalize(p), nil
}

// FormatPlatform is the inverse of ParsePlatform.
func FormatPlatform(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Native returns the platform this binary runs on.
func Native() ocispec.Platform {
	p := ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = "v7"
	}
	return Normalize(p)
}

// Normalize spells architectures and variants the way registries do
// (containerd's platforms package does the same), so that "aarch64" matches
// "arm64" and "arm64/v8" matches "arm64".
func Normalize(p ocispec.Platform) ocispec.Platform {
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "aarch64":
		p.Architecture = "arm64"
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	case "i386":
		p.Architecture = "386"
	}
	if p.Architecture == "arm64" && p.Variant == "v8" {
		p.Variant = ""
	}
	if p.Architecture == "amd64" && p.Variant == "v1" {
		p.Variant = ""
	}
	return p
}

// Match reports whether an image for platform have runs on want. A want
// without a variant accepts any variant.
func Match(want, have ocispec.Platform) bool {
	want, have = Normalize(want), Normalize(have)
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return false
	}
	return want.Variant == "" || want.Variant == have.Variant
}

// Select picks the manifest for platform want from an index, preferring an
// exact variant match over a variant-less one.
func Select(idx ocispec.Index, want ocispec.Platform) (ocispec.Descriptor, error) {
	var found *ocispec.Descriptor
	for i, d := range idx.Manifests {
		if d.Platform == nil || !IsManifest(d.MediaType) || !Match(want, *d.Platform) {
			continue
		}
		if found == nil || (Normalize(*d.Platform).Variant == want.Variant && Normalize(*found.Platform).Variant != want.Variant) {
			found = &idx.Manifests[i]
		}
	}
	if found == nil {
		var have []string
		for _, d := range idx.Manifests {
			if d.Platform != nil {
				have = append(have, FormatPlatform(*d.Platform))
			}
		}
		return ocispec.Descriptor{}, fmt.Errorf("%w: no image for %s in this index (it has: %s); choose one with --platform or copy all with --all-platforms",
			ErrNoPlatform, FormatPlatform(want), strings.Join(have, ", "))
	}
	return *found, nil
}
