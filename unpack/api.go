package unpack

import (
	"errors"
)

// Sentinel errors callers and tests may test with errors.Is.
var (
	// ErrUnsafe marks an entry that tried something no layer may do, such
	// as a whiteout of the root.
	ErrUnsafe = errors.New("unsafe layer entry")
	// ErrLimit marks a layer that expands past a limit (a decompression
	// bomb, say).
	ErrLimit = errors.New("layer exceeds a limit")
)

// Limits bound what one layer may expand to.
type Limits struct {
	// MaxBytes bounds the sum of the logical sizes of regular files (a
	// sparse entry counts at its full size).
	MaxBytes int64
	// MaxEntries bounds the number of tar entries.
	MaxEntries int
	// MaxPathLen bounds the length of an entry's name and link target.
	MaxPathLen int
}

// DefaultLimits are generous for real images (the largest public images
// expand to a few GiB) and stop bombs early.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 32 << 30, MaxEntries: 2 << 20, MaxPathLen: 4096}
}

// Options tune Apply.
type Options struct {
	// Limits; zero fields take DefaultLimits' values.
	Limits Limits
	// Rootless records owners in the user.rootlesscontainers xattr instead
	// of chowning, and skips device nodes. Unprivileged processes always
	// work this way.
	Rootless bool
}

// Warning is something the unpacker could not do and skipped.
type Warning struct {
	Path, Reason string
}

// Report says what Apply did.
type Report struct {
	Entries  int
	Bytes    int64
	Warnings []Warning
}
