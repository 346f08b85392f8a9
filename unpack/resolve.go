package unpack

import (
	"errors"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// forceWalk makes every applier resolve paths by walkInRoot, as on a
// kernel without openat2; tests set it to run the hostile corpus that way.
var forceWalk atomic.Bool

// maxSymlinks is the kernel's bound on symlinks followed in one lookup.
const maxSymlinks = 40

// openInRoot opens rel (a path relative to the root) with every component
// resolved as if the root were "/": "..", absolute symlinks and magic links
// stay inside (openat2 RESOLVE_IN_ROOT, Linux 5.6; walkInRoot on older
// kernels).
func (a *applier) openInRoot(rel string, flags int) (int, error) {
	if rel == "" {
		rel = "."
	}
	if !a.walk {
		fd, err := openat2InRoot(a.root, rel, flags)
		if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EAGAIN) {
			return fd, err
		}
		a.walk = errors.Is(err, unix.ENOSYS)
	}
	return walkInRoot(a.root, rel, flags)
}

// maxEAGAIN bounds the openat2 retries of one path.
const maxEAGAIN = 32

// openat2InRoot is openat2(RESOLVE_IN_ROOT), retried on EAGAIN: the
// kernel returns it when a rename or mount anywhere on the system raced
// with resolving a "..", which a busy machine does all the time (a Go
// build renames files into its cache). After maxEAGAIN tries it gives up
// with EAGAIN, and openInRoot walks the path instead, which holds no lock
// a rename could disturb.
func openat2InRoot(root int, rel string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for range maxEAGAIN - 1 {
		fd, err := unix.Openat2(root, rel, how)
		if !errors.Is(err, unix.EAGAIN) {
			return fd, err
		}
	}
	return unix.Openat2(root, rel, how)
}

// walkInRoot resolves rel under the directory root one component at a
// time, as openat2(RESOLVE_IN_ROOT) does: each step is an openat of one
// name with O_NOFOLLOW from the directory the previous step opened; a
// symlink is read and its target walked in its place (from root when
// absolute); ".." goes back to the directory the walk came from and never
// above root. No path the kernel resolves ever holds "..", a slash or a
// symlink, so nothing outside root can be reached, whatever the tree
// holds. The final component is opened with flags, and followed if a
// symlink unless flags hold O_NOFOLLOW.
//
// Written by hand rather than with cyphar/filepath-securejoin: its
// fallback is chosen by probing the kernel, so on the kernels CI runs it
// would take openat2 and the hostile corpus could not prove the walk.
func walkInRoot(root int, rel string, flags int) (int, error) {
	first, err := unix.Dup(root)
	if err != nil {
		return -1, err
	}
	stack := []int{first} // directories from root to the current one
	defer func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
	}()
	todo := components(rel)
	links := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if name == ".." {
			if len(stack) > 1 {
				unix.Close(stack[len(stack)-1])
				stack = stack[:len(stack)-1]
			}
			continue
		}
		cur := stack[len(stack)-1]
		last := len(todo) == 0
		if last && flags&unix.O_NOFOLLOW != 0 {
			return unix.Openat(cur, name, flags|unix.O_CLOEXEC, 0)
		}
		fd, err := unix.Openat(cur, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, err := readlinkAt(fd, "")
			unix.Close(fd)
			if err != nil {
				return -1, err
			}
			if links++; links > maxSymlinks {
				return -1, unix.ELOOP
			}
			if strings.HasPrefix(target, "/") {
				for _, d := range stack[1:] {
					unix.Close(d)
				}
				stack = stack[:1]
			}
			todo = append(components(target), todo...)
		case unix.S_IFDIR:
			if last {
				unix.Close(fd)
				// O_NOFOLLOW: should name have become a symlink since,
				// this fails rather than follows it.
				return unix.Openat(cur, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
			stack = append(stack, fd)
		default:
			unix.Close(fd)
			if !last {
				return -1, unix.ENOTDIR
			}
			return unix.Openat(cur, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	// The path ended at a directory on the stack ("." or "..").
	return unix.Openat(stack[len(stack)-1], ".", flags|unix.O_CLOEXEC, 0)
}

// components splits p into its names, dropping empty ones and ".".
func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}
