package unpack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sys/unix"
)

// Cache holds the flattened filesystem of every chain of layers it was
// asked for, keyed by chain ID (image-spec: the chain ID of layers 0..n
// names the tree they make together), so that each layer is applied once
// per chain and images sharing a base share its entries. On disk:
//
//	dir/                   0700: privileged entries hold setuid files of root
//	  root/                entries made with chown (one tree per ownership mode:
//	  rootless/            owners set, or recorded in the user.rootlesscontainers xattr)
//	    chains/<hex>/      a chain's filesystem, published by rename; read-only by contract
//	    locks/<hex>        its flock: exclusive while built or pruned, shared while leased
//	    staging/<hex>-…/   a chain being built, or removed by Prune
//	    empty/             the filesystem of an image without layers
//	    siblings/          which chains were built over which parent (reuse.go)
//
// A child chain is a clone of its parent's entry with regular files
// hard-linked, which is safe because Apply never writes into an inode it
// did not create in the same layer.
type Cache struct {
	dir string
	o   Options
	t   tree
}

// Lease is a chain's directory held against Prune until Release.
type Lease struct {
	// Dir is the chain's filesystem. Callers mount it as an overlay lower
	// directory or Clone it; they never write into it.
	Dir     string
	ChainID digest.Digest
	// Applied is what this call applied (nothing on a cache hit).
	Applied Report
	lock    *flock
}

// Release lets Prune remove the chain again. It is idempotent.
func (l *Lease) Release() error {
	if l == nil || l.lock == nil {
		return nil
	}
	err := l.lock.close()
	l.lock = nil
	return err
}

// errGone is a chain pruned between finding and leasing it.
var errGone = errors.New("chain was pruned meanwhile")

// maxRootfsTries bounds the rebuilds when Prune keeps removing a chain
// that Rootfs was about to lease.
const maxRootfsTries = 8

// OpenCache opens (creating it) the cache under dir for o's ownership
// mode, and removes what killed processes left being built.
func OpenCache(ctx context.Context, dir string, o Options) (*Cache, error) {
	if os.Geteuid() != 0 {
		o.Rootless = true // as Apply does
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open unpack cache %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open unpack cache %s: %w", dir, err)
	}
	c := &Cache{dir: dir, o: o, t: tree(filepath.Join(dir, modeDir(o.Rootless)))}
	for _, sub := range []string{"chains", "locks", "staging", "empty", "siblings"} {
		if err := os.MkdirAll(filepath.Join(string(c.t), sub), 0o755); err != nil {
			return nil, fmt.Errorf("open unpack cache %s: %w", dir, err)
		}
	}
	if err := c.t.cleanStaging(ctx); err != nil {
		return nil, fmt.Errorf("open unpack cache %s: %w", dir, err)
	}
	return c, nil
}

func modeDir(rootless bool) string {
	if rootless {
		return "rootless"
	}
	return "root"
}

// Rootfs makes sure every chain of layers is in the cache, building each
// missing one from its parent's entry, and returns a lease on the top
// chain's directory. Several processes may ask for the same chains at once:
// one builds a chain while the others wait for it. An image without layers
// gets an empty directory.
func (c *Cache) Rootfs(ctx context.Context, b store.Blobs, layers []manifest.LayerDesc) (*Lease, error) {
	if len(layers) == 0 {
		return &Lease{Dir: filepath.Join(string(c.t), "empty")}, nil
	}
	diffIDs := make([]digest.Digest, len(layers))
	for i, l := range layers {
		if err := l.DiffID.Validate(); err != nil {
			return nil, fmt.Errorf("unpack layer %s: diffID: %w", l.Digest, err)
		}
		diffIDs[i] = l.DiffID
	}
	chains := identity.ChainIDs(diffIDs)
	for range maxRootfsTries {
		l, err := c.rootfs(ctx, b, layers, chains)
		if !errors.Is(err, errGone) {
			return l, err
		}
	}
	return nil, fmt.Errorf("unpack chain %s: it kept being pruned while being built", chains[len(chains)-1])
}

func (c *Cache) rootfs(ctx context.Context, b store.Blobs, layers []manifest.LayerDesc, chains []digest.Digest) (*Lease, error) {
	// The deepest chain present, leased so that Prune spares it while its
	// children are built from it.
	var parent *Lease
	i := len(chains) - 1
	for ; i >= 0; i-- {
		l, err := c.t.lease(ctx, chains[i])
		if err != nil {
			return nil, err
		}
		if l != nil {
			parent = l
			break
		}
	}
	var applied Report
	for j := i + 1; j < len(chains); j++ {
		next, err := c.build(ctx, b, layers[j], chains[j], parent)
		parent.Release()
		if err != nil {
			return nil, err
		}
		applied = addReport(applied, next.Applied)
		parent = next
	}
	parent.Applied = applied
	return parent, nil
}

func addReport(a, b Report) Report {
	a.Entries += b.Entries
	a.Bytes += b.Bytes
	a.Warnings = append(a.Warnings, b.Warnings...)
	return a
}

// build makes chain (layer l over parent, nil for a first layer) unless
// another process made it meanwhile, and leases it.
func (c *Cache) build(ctx context.Context, b store.Blobs, l manifest.LayerDesc, chain digest.Digest, parent *Lease) (*Lease, error) {
	lk, done, err := c.lockToBuild(ctx, chain)
	if err != nil || done != nil {
		return done, err
	}
	final := c.t.chainDir(chain)
	var rep Report
	if _, err := os.Lstat(final); errors.Is(err, os.ErrNotExist) {
		rep, err = c.make(ctx, b, l, chain, parent)
		if err != nil {
			lk.close()
			return nil, err
		}
	} else if err != nil {
		lk.close()
		return nil, fmt.Errorf("unpack chain %s: %w", chain, err)
	}
	// flock converts by dropping and retaking, so Prune may slip in
	// between: check the chain is still there once shared.
	if err := lk.lock(ctx, unix.LOCK_SH, true); err != nil {
		lk.close()
		return nil, fmt.Errorf("unpack chain %s: %w", chain, err)
	}
	if _, err := os.Lstat(final); err != nil {
		lk.close()
		return nil, fmt.Errorf("unpack chain %s: %w", chain, errGone)
	}
	return &Lease{Dir: final, ChainID: chain, Applied: rep, lock: lk}, nil
}

// maxBuildWaits bounds the turns lockToBuild takes between a chain's
// lock and a lease on it while other processes hold it shared.
const maxBuildWaits = 1000

// lockToBuild takes chain's lock exclusively, or, when another process
// holds it, leases the chain that process built or is using (done). It
// does not wait for the exclusive lock: a chain built by another process
// meanwhile may stay leased for as long as a container runs on it.
func (c *Cache) lockToBuild(ctx context.Context, chain digest.Digest) (lk *flock, done *Lease, err error) {
	delay := time.Millisecond
	for range maxBuildWaits {
		lk, err := lockFile(ctx, c.t.lockPath(chain), unix.LOCK_EX, false)
		if err == nil {
			return lk, nil, nil
		}
		if !errors.Is(err, errBusy) {
			return nil, nil, fmt.Errorf("unpack chain %s: %w", chain, err)
		}
		// Held: by a builder (lease waits for it to finish), by leases
		// (the chain is there), or by a brief look at a missing chain.
		if done, err := c.t.lease(ctx, chain); err != nil || done != nil {
			return nil, done, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("unpack chain %s: %w", chain, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
	return nil, nil, fmt.Errorf("unpack chain %s: its lock stayed busy", chain)
}

// make applies l over a clone of parent in a staging directory and
// publishes it by rename. The caller holds the chain's lock exclusively.
func (c *Cache) make(ctx context.Context, b store.Blobs, l manifest.LayerDesc, chain digest.Digest, parent *Lease) (Report, error) {
	stage, err := c.t.stagingDir(chain)
	if err != nil {
		return Report{}, fmt.Errorf("unpack chain %s: %w", chain, err)
	}
	if parent == nil {
		err = os.Mkdir(stage, 0o755)
	} else {
		err = Clone(ctx, parent.Dir, stage, true)
	}
	if err != nil {
		removeStaging(stage)
		return Report{}, fmt.Errorf("unpack chain %s: %w", chain, err)
	}
	var sibling string
	if sib := c.t.sibling(ctx, parent, chain.Encoded()); sib != nil {
		defer sib.Release()
		sibling = sib.Dir
	}
	rep, err := applyBlob(ctx, b, stage, l, c.o, sibling)
	if err == nil {
		err = publish(stage, c.t.chainDir(chain))
	}
	if err != nil {
		removeStaging(stage)
		return rep, fmt.Errorf("unpack chain %s: %w", chain, err)
	}
	c.t.noteSibling(parent, chain)
	return rep, nil
}

// publish makes the staged tree durable, then visible under final: after
// a crash a chain is whole or absent.
//
// The syncfs is most of a first Rootfs (the 128 MB / 6,700-file bench
// image: the unpack 0.4-1 s, the sync as long as the disk takes to write
// the tree, and on a shared file system other processes' dirty data too),
// and it stays. Without it a crash can leave a published chain whose
// files have their names, modes and sizes but not their data (ext4
// allocates blocks only at writeback), and nothing would notice: a chain
// is never checked again, and every image sharing it reuses it. That is
// what containerd and podman do by default, no sync of unpacked layers,
// and what their users hit: zero-byte binaries after a power loss that
// survive deleting and re-pulling the image (containerd/containerd#5854,
// #8895, moby/moby#49784); both added one syncfs per layer as an option
// since (containerd 2.0's diff sync_fs, containerd/containerd#10284;
// containers/storage's sync = "filesystem"). Exact durability, an fsync of
// each file and directory, would flush only this tree but cost a journal
// commit per file, far more than one syncfs. Starting each file's
// writeback while unpacking (sync_file_range) made no measurable
// difference here.
func publish(stage, final string) error {
	fd, err := unix.Open(stage, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	err = unix.Syncfs(fd)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("sync %s: %w", stage, err)
	}
	if err := os.Rename(stage, final); err != nil {
		return err
	}
	return syncDir(filepath.Dir(final))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// tree is one ownership mode's part of the cache.
type tree string

func (t tree) chainDir(d digest.Digest) string {
	return filepath.Join(string(t), "chains", d.Encoded())
}

func (t tree) lockPath(d digest.Digest) string {
	return filepath.Join(string(t), "locks", d.Encoded())
}

// stagingDir names a fresh staging directory for chain; its name starts
// with the chain's hex so that cleanStaging knows which lock guards it.
func (t tree) stagingDir(chain digest.Digest) (string, error) {
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	return filepath.Join(string(t), "staging", chain.Encoded()+"-"+hex.EncodeToString(r[:])), nil
}

// lease leases chain if it is in the cache (nil if not), waiting while
// another process builds it.
func (t tree) lease(ctx context.Context, chain digest.Digest) (*Lease, error) {
	lk, err := lockFile(ctx, t.lockPath(chain), unix.LOCK_SH, true)
	if err != nil {
		return nil, fmt.Errorf("unpack chain %s: %w", chain, err)
	}
	dir := t.chainDir(chain)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		lk.close()
		return nil, nil
	} else if err != nil {
		lk.close()
		return nil, fmt.Errorf("unpack chain %s: %w", chain, err)
	}
	return &Lease{Dir: dir, ChainID: chain, lock: lk}, nil
}
