package runner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
)

// Network selects the network namespace of the process.
type Network string

const (
	// NetworkHost keeps the caller's network namespace.
	NetworkHost Network = "host"
	// NetworkNone gives the process a new network namespace with only lo up.
	NetworkNone Network = "none"
)

// Rootfs selects how the root filesystem is presented to the process.
type Rootfs int

const (
	// Ephemeral mounts Dir as the lower layer of an overlay whose upper
	// layer is thrown away when the process exits: Dir is never modified.
	Ephemeral Rootfs = iota
	// Writable bind-mounts Dir itself: the process's changes stay in Dir
	// (build steps use this and diff Dir afterwards).
	Writable
	// Layered mounts an overlay of Lower (uppermost first) over Dir, all
	// read-only and never modified, under Upper, a directory the caller
	// keeps: the process's changes stay in Upper in overlayfs's own form
	// (deletions as 0/0 character devices, replaced directories marked
	// with the user.overlay.opaque xattr), so that a build reads its
	// step's changes there instead of diffing a whole tree. Mount points
	// the init makes are removed again, as with Writable.
	Layered
)

// Mount is a bind mount of a host path, or a tmpfs when Source is empty
// and Tmpfs is set.
type Mount struct {
	Source   string // host path; empty for tmpfs
	Target   string // absolute path inside the container
	ReadOnly bool
	Tmpfs    bool
}

// Spec describes one process to run.
type Spec struct {
	Dir    string // the root filesystem directory
	Rootfs Rootfs
	// Lower, Upper and Work are the overlay of a Layered rootfs: layers
	// above Dir (uppermost first), the directory that receives the
	// changes, and overlayfs's work directory on Upper's filesystem.
	Lower       []string
	Upper, Work string
	// ReadOnly makes the root filesystem read-only once the mounts are
	// in place (with Writable, mount points may still be created in Dir).
	ReadOnly bool
	// Args is argv; Args[0] is looked up in the PATH of Env when it has
	// no slash, as docker does.
	Args     []string
	Env      []string // KEY=VALUE; PATH and HOME get docker's defaults when missing
	Cwd      string   // created when missing; "/" when empty
	User     string   // USER[:GROUP], names or numeric ids, resolved in Dir's /etc/passwd and /etc/group
	Hostname string
	// UnmappedUserAsRoot runs as root of the namespace, with a notice on
	// stderr, when User needs ids the namespace lacks (a rootless build
	// without subordinate ids), instead of failing.
	UnmappedUserAsRoot bool
	Network            Network
	Mounts             []Mount
	// Hosts lines are added to the generated /etc/hosts.
	Hosts []string
	// TTY gives the process a pseudo-terminal as its stdio; Stdin, when
	// it is a terminal, is put in raw mode and its size followed.
	TTY bool
	// Signals are forwarded to the process while it runs.
	Signals <-chan os.Signal
	// Notice receives one-line notices (such as the single-id mapping);
	// nil discards them.
	Notice io.Writer
	// StateDir holds the run's scratch directory; os.TempDir() when empty.
	// Nothing is left in it after Run returns.
	StateDir string
	// Mountpoint, when set, is an existing directory the init mounts its
	// scratch tmpfs on inside its own mount namespace, instead of a
	// directory made in StateDir for the run. Nothing is ever written to
	// it on disk, so runs can share one; sparing the per-run directory
	// spares its removal too, which has to detach the tmpfs from the
	// namespace of an init still exiting.
	Mountpoint string
	// Init is the executable started as the container's init: a program
	// whose main calls Init when IsInit (internal/cmd/runner-init is one).
	// Empty means the running binary itself. A small init starts several
	// times faster than a large program that links much more; when it
	// cannot be executed (a noexec mount), Run falls back to the running
	// binary.
	Init string
}

// Stdio is the process's standard streams; nil ones read from or write to
// /dev/null.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Errors Run returns before the command starts.
var (
	// ErrNoUserns: the kernel does not let this user create namespaces.
	ErrNoUserns = errors.New("unprivileged user namespaces are not available")
	// ErrNoOverlay: an Ephemeral or Layered rootfs needs an overlay mount
	// the kernel refused inside the user namespace; callers fall back to a
	// copy of Dir run as Writable.
	ErrNoOverlay = errors.New("overlay mounts are not allowed in a user namespace here")
	// ErrSetup: preparing the container (mounts, user, cwd) failed.
	ErrSetup = errors.New("container setup failed")
)

// NotFoundExit is the exit status, as in docker and the shells, of a
// command that could not be found or executed.
const NotFoundExit = 127

func (s *Spec) validate() error {
	if s.Dir == "" {
		return errors.New("no root filesystem directory")
	}
	if st, err := os.Stat(s.Dir); err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("root filesystem %s is not a directory", s.Dir)
	}
	if err := s.validateLayers(); err != nil {
		return err
	}
	if len(s.Args) == 0 || s.Args[0] == "" {
		return errors.New("no command given, and the image has neither an entrypoint nor a cmd")
	}
	if s.Cwd != "" && !path.IsAbs(s.Cwd) {
		return fmt.Errorf("working directory %q is not absolute", s.Cwd)
	}
	switch s.Network {
	case "", NetworkHost, NetworkNone:
	default:
		return fmt.Errorf("network %q: want none or host", s.Network)
	}
	for _, m := range s.Mounts {
		if err := m.validate(); err != nil {
			return err
		}
	}
	return nil
}

// validateLayers checks a Layered rootfs's directories.
func (s *Spec) validateLayers() error {
	if s.Rootfs != Layered {
		return nil
	}
	for _, d := range append(slices.Clone(s.Lower), s.Upper, s.Work) {
		if !path.IsAbs(d) {
			return fmt.Errorf("overlay directory %q: want an absolute host path", d)
		}
		if st, err := os.Stat(d); err != nil {
			return fmt.Errorf("overlay directory: %w", err)
		} else if !st.IsDir() {
			return fmt.Errorf("overlay directory %s is not a directory", d)
		}
	}
	return nil
}

func (m Mount) validate() error {
	if !path.IsAbs(m.Target) || path.Clean(m.Target) == "/" {
		return fmt.Errorf("mount target %q: want an absolute path other than /", m.Target)
	}
	if m.Tmpfs {
		return nil
	}
	if !path.IsAbs(m.Source) {
		return fmt.Errorf("mount source %q: want an absolute host path", m.Source)
	}
	if _, err := os.Stat(m.Source); err != nil {
		return fmt.Errorf("mount source: %w", err)
	}
	return nil
}

// ParseVolume parses docker's -v HOST:CONTAINER[:ro|rw] form. The host path
// must be absolute (named volumes do not exist here) and exist.
func ParseVolume(s string) (Mount, error) {
	parts := strings.Split(s, ":")
	var m Mount
	switch len(parts) {
	case 2:
	case 3:
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro", "readonly":
				m.ReadOnly = true
			case "rw", "z", "Z", "":
			default:
				return Mount{}, fmt.Errorf("volume %q: unknown option %q (want ro or rw)", s, o)
			}
		}
	default:
		return Mount{}, fmt.Errorf("volume %q: want HOST:CONTAINER[:ro]", s)
	}
	if !path.IsAbs(parts[0]) {
		return Mount{}, fmt.Errorf("volume %q: the host path must be absolute (named volumes are not supported)", s)
	}
	m.Source, m.Target = path.Clean(parts[0]), path.Clean(parts[1])
	if err := m.validate(); err != nil {
		return Mount{}, fmt.Errorf("volume %q: %w", s, err)
	}
	return m, nil
}

// ParseTmpfs parses docker's --tmpfs PATH form (options after a colon are
// not supported yet and are refused rather than ignored).
func ParseTmpfs(s string) (Mount, error) {
	if strings.Contains(s, ":") {
		return Mount{}, fmt.Errorf("tmpfs %q: mount options are not supported", s)
	}
	m := Mount{Target: path.Clean(s), Tmpfs: true}
	if err := m.validate(); err != nil {
		return Mount{}, fmt.Errorf("tmpfs %q: %w", s, err)
	}
	return m, nil
}
