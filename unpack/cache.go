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
//	    unsynced/<hex>     "<boot ID>": chains/<hex> was published during that boot and not
//	                       synced since; made before it, removed once synced (bootsync.go)
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
	d   *durability
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
func OpenCache(ctx context.Context, dir string, o Options, opts ...CacheOption) (*Cache, error) {
	if os.Geteuid() != 0 {
		o.Rootless = true // as Apply does
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open unpack cache %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open unpack cache %s: %w", dir, err)
	}
	c := &Cache{dir: dir, o: o, d: newDurability(opts)}
	c.t = c.tree(o.Rootless)
	for _, sub := range []string{"chains", "unsynced", "locks", "staging", "empty", "siblings"} {
		if err := os.MkdirAll(filepath.Join(c.t.dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("open unpack cache %s: %w", dir, err)
		}
	}
	if err := c.t.cleanStaging(ctx); err != nil {
		return nil, fmt.Errorf("open unpack cache %s: %w", dir, err)
	}
	return c, nil
}

// tree is the part of the cache for one ownership mode.
func (c *Cache) tree(rootless bool) tree {
	return tree{dir: filepath.Join(c.dir, modeDir(rootless)), d: c.d}
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
		return &Lease{Dir: filepath.Join(c.t.dir, "empty")}, nil
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
	present, err := c.t.keepOrDrop(chain)
	if err == nil && !present {
		rep, err = c.make(ctx, b, l, chain, parent)
	}
	if err != nil {
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
		return Report{}, err
	}
	if parent == nil {
		err = os.Mkdir(stage, 0o755)
	} else {
		err = Clone(ctx, parent.Dir, stage, true)
	}
	if err != nil {
		removeStaging(stage)
		return Report{}, err
	}
	var sibling string
	if sib := c.t.sibling(ctx, parent, chain.Encoded()); sib != nil {
		defer sib.Release()
		sibling = sib.Dir
	}
	rep, err := applyBlob(ctx, b, stage, l, c.o, sibling)
	if err == nil {
		err = c.t.publish(stage, chain)
	}
	if err != nil {
		removeStaging(stage)
		return rep, err
	}
	c.t.noteSibling(parent, chain)
	return rep, nil
}

// publish makes the staged tree chain's entry: visible under its final
// name, and after a crash whole or absent.
//
// It does not wait for the tree's data to reach the disk. Without a sync
// a crash can leave a published chain whose files have their names, modes
// and sizes but not their data (ext4 allocates blocks only at writeback),
// and nothing would notice: a chain is never checked again, and every
// image sharing it reuses it. That is what containerd and podman do by
// default, no sync of unpacked layers, and what their users hit:
// zero-byte binaries after a power loss that survive deleting and
// re-pulling the image (containerd/containerd#5854, #8895,
// moby/moby#49784); both added one syncfs per layer as an option since
// (containerd 2.0's diff sync_fs, containerd/containerd#10284;
// containers/storage's sync = "filesystem"). imgtool synced each chain
// so until that was most of a first Rootfs: on the 128 MB / 6,700-file
// bench image, 2.7-2.9 s with the sync against 0.3 s without, and on a
// shared file system the sync writes other processes' dirty data too.
// Exact durability, an fsync of each file and directory, would flush
// only this tree but cost a journal commit per file, far more than one
// syncfs.
//
// So the chain is marked instead with the boot it was written in
// (bootsync.go), and the marker is durable before the rename is: only a
// crash of the kernel loses unwritten data, and it changes the boot ID, so
// every chain that may have lost data is one marked by another boot,
// which the cache then treats as absent. Until the next boot the page
// cache serves the whole tree. A use 30 s later, once writeback has
// written the tree, syncs it and removes the marker, so that chains in use
// survive reboots. Without a boot ID (no /proc) the tree is synced before
// the rename, as it always was.
func (t tree) publish(stage string, chain digest.Digest) error {
	if t.d.boot == "" {
		if err := syncFS(stage); err != nil {
			return err
		}
		// A marker a crash left without its chain would say this synced
		// one is not.
		if err := os.Remove(t.markerPath(chain)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("publish chain %s: %w", chain, err)
		}
	} else if err := t.markUnsynced(chain); err != nil {
		return err
	}
	if err := os.Rename(stage, t.chainDir(chain)); err != nil {
		return fmt.Errorf("publish chain %s: %w", chain, err)
	}
	if t.d.boot != "" {
		return nil // the marker covers a rename lost in a crash too
	}
	return syncDir(filepath.Join(t.dir, "chains"))
}

// keepOrDrop says whether chain, whose lock the caller holds
// exclusively, is in the cache and may be used; one that may not is
// removed first.
func (t tree) keepOrDrop(chain digest.Digest) (bool, error) {
	if _, err := os.Lstat(t.chainDir(chain)); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	ok, err := t.trusted(chain)
	if err != nil || ok {
		return ok, err
	}
	return false, t.discard(chain)
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
type tree struct {
	dir string
	d   *durability // shared by the Cache's trees
}

func (t tree) chainDir(d digest.Digest) string {
	return filepath.Join(t.dir, "chains", d.Encoded())
}

func (t tree) lockPath(d digest.Digest) string {
	return filepath.Join(t.dir, "locks", d.Encoded())
}

// stagingDir names a fresh staging directory for chain; its name starts
// with the chain's hex so that cleanStaging knows which lock guards it.
func (t tree) stagingDir(chain digest.Digest) (string, error) {
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	return filepath.Join(t.dir, "staging", chain.Encoded()+"-"+hex.EncodeToString(r[:])), nil
}

// lease leases chain if it is in the cache and may be used (nil if not),
// waiting while another process builds it.
func (t tree) lease(ctx context.Context, chain digest.Digest) (*Lease, error) {
	lk, err := lockFile(ctx, t.lockPath(chain), unix.LOCK_SH, true)
	if err != nil {
		return nil, fmt.Errorf("unpack chain %s: %w", chain, err)
	}
	dir := t.chainDir(chain)
	ok := false
	if _, err = os.Lstat(dir); err == nil {
		ok, err = t.trusted(chain) // one that is not is removed by whoever builds it
	} else if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil || !ok {
		lk.close()
		if err != nil {
			return nil, fmt.Errorf("unpack chain %s: %w", chain, err)
		}
		return nil, nil
	}
	return &Lease{Dir: dir, ChainID: chain, lock: lk}, nil
}
