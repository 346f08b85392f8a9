// Package bundlename owns where an image saved under a reference lands in
// a registry it is imported or copied into. It is shared by the registry
// (registry import) and by the commands (copy to a registry root), and
// imports nothing heavier than go-containerregistry's name package, so
// that the lean imgtool binary can name images without linking the
// registry.
package bundlename

import (
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Repository is the repository an image saved as ref goes to in a
// registry it is imported or copied into: its repository path without
// its registry host ("quay.io/org/app:1" goes to "org/app",
// "docker.io/library/busybox" to "library/busybox"), as containerd asks a
// mirror for it; scoped, the host is kept as the first component
// ("quay.io/org/app", with a port's ":" spelled "_"), so that images of
// several registries cannot collide.
func Repository(ref name.Reference, scoped bool) string {
	repo := ref.Context().RepositoryStr()
	if !scoped {
		return repo
	}
	host := ref.Context().RegistryStr()
	if host == name.DefaultRegistry {
		host = "docker.io"
	}
	return strings.ReplaceAll(host, ":", "_") + "/" + repo
}
