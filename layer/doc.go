// Package layer turns filesystem changes into one layer blob: a tar
// stream with entries in a stable order and build-host details removed,
// compressed (zstd by default, gzip, or none), with its DiffID (sha256 of
// the tar), Digest (sha256 of the compressed stream) and sizes computed in
// the same single pass that streams it to the caller's writer.
//
// It knows nothing of Dockerfiles: a Changes stream says which paths of a
// root directory the layer holds, and which it deletes (whiteouts).
package layer
