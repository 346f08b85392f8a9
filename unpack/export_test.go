package unpack

// ForceWalk makes Apply resolve paths as on a kernel without openat2.
func ForceWalk(on bool) { forceWalk.Store(on) }

// WalkInRoot exposes the fallback resolver to the tests.
var WalkInRoot = walkInRoot
