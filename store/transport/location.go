package transport

import (
	"fmt"
	"strings"
)

// Kind says where an image lives.
type Kind int

const (
	// Registry is a remote registry: "docker://REF" or a plain reference.
	Registry Kind = iota
	// Store is imgtool's local store, addressed by reference.
	Store
	// OCILayout is an OCI image layout directory: "oci:DIR[:REF]".
	OCILayout
	// OCIArchive is a tar of an OCI image layout: "oci-archive:FILE[:REF]".
	OCIArchive
	// DockerArchive is what docker save writes: "docker-archive:FILE[:REF]".
	DockerArchive
)

func (k Kind) String() string {
	return [...]string{"docker", "store", "oci", "oci-archive", "docker-archive"}[k]
}

// Location is a parsed image location in skopeo's transport syntax.
type Location struct {
	Kind Kind
	// Path is the directory or file of layouts and archives.
	Path string
	// Ref is the image reference; optional for layouts and archives.
	Ref string
}

func (l Location) String() string {
	switch l.Kind {
	case Registry:
		return "docker://" + l.Ref
	case Store:
		return l.Ref
	}
	if l.Ref == "" {
		return l.Kind.String() + ":" + l.Path
	}
	return l.Kind.String() + ":" + l.Path + ":" + l.Ref
}

// ParseLocation parses "docker://REF", "oci:DIR[:REF]",
// "oci-archive:FILE[:REF]", "docker-archive:FILE[:REF]", or a plain
// reference, which means plain (a Registry for copy and pull, the Store
// for push and save: the caller decides).
func ParseLocation(s string, plain Kind) (Location, error) {
	if rest, ok := strings.CutPrefix(s, "docker://"); ok {
		if rest == "" {
			return Location{}, fmt.Errorf("parse location %q: missing image reference after docker://", s)
		}
		return Location{Kind: Registry, Ref: rest}, nil
	}
	for _, k := range []Kind{OCILayout, OCIArchive, DockerArchive} {
		rest, ok := strings.CutPrefix(s, k.String()+":")
		if !ok {
			continue
		}
		// As skopeo does, the path ends at the first colon: references
		// contain colons (registry ports, tags), paths seldom do.
		path, ref, _ := strings.Cut(rest, ":")
		if path == "" {
			return Location{}, fmt.Errorf("parse location %q: missing path after %q", s, k.String()+":")
		}
		return Location{Kind: k, Path: path, Ref: ref}, nil
	}
	if s == "" {
		return Location{}, fmt.Errorf("parse location: empty image reference")
	}
	if i := strings.Index(s, ":"); i > 0 && !strings.ContainsAny(s[:i], "./") && strings.Contains(s, "://") {
		return Location{}, fmt.Errorf("parse location %q: unknown transport %q (use docker://, oci:, oci-archive: or docker-archive:)", s, s[:i])
	}
	return Location{Kind: plain, Ref: s}, nil
}
