// Package unpack applies layer blobs to a root directory safely: it owns
// decompression by magic bytes, digest and diffID checks while streaming,
// whiteouts, hard links, ownership (chown when allowed, recorded in the
// user.rootlesscontainers xattr when not), and limits on what a layer may
// expand to.
//
// Layers come from any registry, so every entry is hostile until proven
// otherwise. Every path is resolved with openat2(RESOLVE_IN_ROOT): "..",
// absolute names and symlinks all resolve as if root were "/", so no entry
// can read, write, chmod, chown or delete anything outside root. Files are
// then made with the *at system calls relative to a directory opened that
// way, never by joining a tar name onto root.
package unpack
