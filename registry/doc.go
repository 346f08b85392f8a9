// Package registry owns `imgtool registry serve`: the OCI distribution API
// (v1.1: manifests, blobs, chunked and resumable uploads, cross-repository
// mounts, deletes, tags and catalog paging, referrers, sha256 and sha512)
// as its own HTTP handlers, over its own repository layout (paths.go)
// written through a distribution/v3 storage driver. Upload state lives in
// storage, never in process memory, so any replica over the same storage
// can continue an upload. Garbage collection runs while servers take
// pushes; gc.go argues why that is safe.
package registry

import "github.com/opencontainers/image-spec/specs-go"

var specsVersioned = specs.Versioned{SchemaVersion: 2}
