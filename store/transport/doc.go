// Package transport moves images between the local store, registries, OCI
// layout directories, and OCI or docker archives.
//
// Every move is one walk (Copy) from a Source to a Destination: manifests
// are read and validated, the platform is chosen, blobs the destination
// already has are skipped (HEAD first), the rest stream concurrently and are
// verified against their digests, and the manifest is written only after
// everything it references, so no destination ever names an incomplete
// image. go-containerregistry's remote package speaks the registry protocol;
// its types stay inside remote.go.
package transport
