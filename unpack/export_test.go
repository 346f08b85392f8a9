package unpack

// ForceWalk makes Apply resolve paths as on a kernel without openat2.
func ForceWalk(on bool) { forceWalk.Store(on) }

// WalkInRoot exposes the fallback resolver to the tests.
var WalkInRoot = walkInRoot

// Openat2InRoot exposes openat2(RESOLVE_IN_ROOT) as openInRoot calls it.
var Openat2InRoot = openat2InRoot
