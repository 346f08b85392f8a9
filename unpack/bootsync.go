package unpack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// A chain is published without waiting for its data to reach the disk,
// and marked as written during this boot and not synced since:
//
//	unsynced/<chain hex>   "<boot ID>\n", made before chains/<chain hex> is, mtime the publish time
//
// While the kernel that wrote a chain runs, its page cache holds the
// chain's data whatever happened to the processes that wrote it, so the
// chain is whole. Only a crash of the kernel (or a power loss) can lose
// data that was never written back, and the next boot has another boot ID
// (/proc/sys/kernel/random/boot_id is random per boot): a chain marked by
// another boot is treated as absent, removed and built again. A chain
// used 30 s after its publishing (the kernel's dirty_expire_centisecs
// default: by then writeback has normally written it, so the sync costs
// little) is synced and loses its marker; Prune does the same for all of
// this boot's marked chains with one sync. A chain without a marker was
// synced, by a promotion or before it was published (by older versions,
// or when the boot ID cannot be read), and is trusted on any boot.

// promoteAfter is how old a marked chain of this boot is when a use
// syncs it and removes its marker.
const promoteAfter = 30 * time.Second

// bootIDFile is where Linux gives each boot its random ID.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// maxMarker bounds what is read of a marker (a boot ID is a 36-byte UUID).
const maxMarker = 128

// CacheOption sets what OpenCache takes from the running system.
type CacheOption func(*durability)

// WithBootID replaces the kernel's boot ID with what read returns (tests
// play reboots with it). When read fails, or returns something that is
// no boot ID, the cache syncs each chain before publishing it, as it does
// without /proc.
func WithBootID(read func() (string, error)) CacheOption {
	return func(d *durability) { d.readBoot = read }
}

// WithClock replaces time.Now as the clock that says when a marked chain
// is old enough to sync.
func WithClock(now func() time.Time) CacheOption {
	return func(d *durability) { d.now = now }
}

// durability is how this Cache makes chains safe against a crash.
type durability struct {
	readBoot func() (string, error)
	now      func() time.Time
	// boot is this boot's ID, or "" when unknown: then every chain is
	// synced before it is published, and no marked chain is trusted.
	boot string
}

func newDurability(opts []CacheOption) *durability {
	d := &durability{readBoot: readBootID, now: time.Now}
	for _, o := range opts {
		o(d)
	}
	if id, err := d.readBoot(); err == nil && validBootID(id) {
		d.boot = id
	}
	return d
}

func readBootID() (string, error) {
	f, err := os.Open(bootIDFile)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMarker))
	return strings.TrimSpace(string(b)), err
}

// validBootID accepts what a marker can hold and compare exactly: one
// short printable word.
func validBootID(id string) bool {
	if id == "" || len(id) > maxMarker-1 {
		return false
	}
	for _, r := range id {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}

// mark is what a chain's marker says.
type mark int

const (
	synced   mark = iota // no marker: trusted on any boot
	thisBoot             // written during this boot, not synced yet
	stale                // another boot's, unreadable, or this boot unknown
)

func (t tree) markerPath(chain digest.Digest) string {
	return filepath.Join(t.dir, "unsynced", chain.Encoded())
}

// mark reads chain's marker, and when it is this boot's, when it was made.
func (t tree) mark(chain digest.Digest) (mark, time.Time, error) {
	f, err := os.OpenFile(t.markerPath(chain), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return synced, time.Time{}, nil
	}
	if err != nil {
		return stale, time.Time{}, fmt.Errorf("read the sync marker of chain %s: %w", chain, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return stale, time.Time{}, fmt.Errorf("read the sync marker of chain %s: %w", chain, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxMarker))
	if err != nil {
		return stale, time.Time{}, fmt.Errorf("read the sync marker of chain %s: %w", chain, err)
	}
	// An empty marker is one whose data a crash lost: not this boot's.
	if t.d.boot == "" || !fi.Mode().IsRegular() || string(bytes.TrimSpace(b)) != t.d.boot {
		return stale, time.Time{}, nil
	}
	return thisBoot, fi.ModTime(), nil
}

// markUnsynced makes chain's marker, durably: a published chain must
// never lack it after a crash, so its name reaches the disk before the
// chain's rename can. The caller holds the chain's lock exclusively.
func (t tree) markUnsynced(chain digest.Digest) error {
	tmp, err := t.stagingDir(chain) // a killed process's leftover goes with its staging
	if err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("mark chain %s unsynced: %w", chain, err)
	}
	_, err = f.WriteString(t.d.boot + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, t.markerPath(chain))
	}
	if err == nil {
		err = syncDir(filepath.Join(t.dir, "unsynced"))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mark chain %s unsynced: %w", chain, err)
	}
	return nil
}

// promoteDue syncs chain and removes its marker when it is a marked chain
// of this boot published at least promoteAfter ago. The caller leases the
// chain, so that it is not removed and published again meanwhile. It is
// best effort: a chain left marked is synced on a later use or Prune, or
// built again after a reboot.
func (t tree) promoteDue(chain digest.Digest, m mark, at time.Time) {
	if m != thisBoot || t.d.now().Sub(at) < promoteAfter {
		return
	}
	if syncFS(t.dir) == nil {
		t.unmark([]digest.Digest{chain})
	}
}

// unmark removes the markers of chains a sync has just made durable.
func (t tree) unmark(chains []digest.Digest) {
	for _, c := range chains {
		os.Remove(t.markerPath(c))
	}
	syncDir(filepath.Join(t.dir, "unsynced"))
}

// syncFS flushes the whole file system that holds dir.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// trusted says whether chain, which the caller has locked and found in
// chains/, may be used: after a reboot, one marked unsynced may miss data.
// A marked chain of this boot that is due is synced and unmarked.
func (t tree) trusted(chain digest.Digest) (bool, error) {
	m, at, err := t.mark(chain)
	if err != nil {
		return false, err
	}
	t.promoteDue(chain, m, at)
	return m != stale, nil
}
