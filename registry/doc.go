// Package registry owns `imgtool registry serve`: the OCI distribution API
// (v1.1: manifests, blobs, chunked and resumable uploads, cross-repository
// mounts, deletes, tags and catalog paging, referrers, sha256 and sha512)
// as its own HTTP handlers, over its own repository layout (paths.go)
// written through a distribution/v3 storage driver. Upload state lives in
// storage, never in process memory, so any replica over the same storage
// can continue an upload. Garbage collection runs while servers take
// pushes; gc.go argues why that is safe.
//
// In front of the API stands a gate (gate.go) that enforces Access:
// htpasswd logins (htpasswd.go), anonymous reads, read-only mode and
// per-address limits on failed logins (loginlimit.go). The package also
// serves /healthz and Prometheus /metrics, and makes or loads the TLS
// material (tls.go, selfsigned.go).
package registry

import "github.com/opencontainers/image-spec/specs-go"

var specsVersioned = specs.Versioned{SchemaVersion: 2}
