// Package unpack applies layer blobs to a root directory safely: it owns
// decompression by magic bytes, digest and diffID checks while streaming,
// whiteouts, hard links, ownership (chown when allowed, recorded in the
// user.rootlesscontainers xattr when not), limits on what a layer may
// expand to, and the per-layer unpack cache keyed by chain ID (Cache),
// with Clone to copy or hard-link a cached tree.
//
// Layers come from any registry, so every entry is hostile until proven
// otherwise. Every path is resolved with openat2(RESOLVE_IN_ROOT) (or, on
// kernels before 5.6, an equivalent walk one component at a time): "..",
// absolute names and symlinks all resolve as if root were "/", so no entry
// can read, write, chmod, chown or delete anything outside root. Files are
// then made with the *at system calls relative to a directory opened that
// way, never by joining a tar name onto root.
package unpack
