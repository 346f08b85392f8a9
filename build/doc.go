// Package build turns a Dockerfile and its build context into an OCI image
// in the local store, without a daemon and without root.
//
// It owns the Dockerfile (parsed with BuildKit's parser, instructions and
// shell packages, never by hand, so that syntax and variable expansion mean
// what they mean to docker build), the stage graph and --target pruning, the
// build context and its .dockerignore, and the execution of each
// instruction: COPY streams its sources straight into a layer, reading the
// stage from the unpack cache (copystream.go), or writes them into the
// stage's writable tree when it has one; RUN runs through an Executor
// (rootless namespaces, provided by the caller) on an overlay of the stage's
// layers, its changes read from the upper directory (overlayrun.go), or on
// the writable tree diffed against a snapshot where overlays are refused;
// the other instructions change the image config. It owns the sources a
// build reads besides the context: git repositories (git.go, through the
// git command) and the ssh agents RUN --mount=type=ssh forwards (ssh.go).
// Images are assembled with package manifest and written into a
// store.Store.
//
// It owns the build cache too: every step has a key (cachekey.go) that
// chains its base, the instruction after expansion, the ARGs a RUN sees
// and the digests of the context files a COPY copies (read only when
// their metadata changed, statcache.go). A Cache on disk (cache.go) maps
// keys to the layers steps gave, and a hit reuses the layer without
// running anything; a stage's filesystem is only unpacked when a step
// that needs it misses (lazyfs.go). The records travel through any
// registry as one OCI manifest (remotecache.go).
package build
