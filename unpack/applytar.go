package unpack

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sys/unix"
)

// ApplyTar makes the chain of parent's layers and one more layer whose
// uncompressed tar r yields, as it is being written: a builder tees the
// tar of a layer it writes into r, so that the files land in the cache
// while the blob is still being compressed, instead of being unpacked
// from the blob afterwards. The layer's diff ID (the digest of what r
// yields to its end) names the chain; it is returned with the lease. A
// chain that another process made meanwhile is taken as it is.
//
// The chain is staged under a name no chain has, guarded by a lock of
// that name, so that a killed builder's staging is removed by the next
// OpenCache or Prune.
func (c *Cache) ApplyTar(ctx context.Context, b store.Blobs, parent []manifest.LayerDesc, r io.Reader) (*Lease, digest.Digest, error) {
	var pl *Lease
	if len(parent) > 0 {
		var err error
		if pl, err = c.Rootfs(ctx, b, parent); err != nil {
			return nil, "", err
		}
		defer pl.Release()
	}
	var name [32]byte
	if _, err := rand.Read(name[:]); err != nil {
		return nil, "", err
	}
	tmp := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(name[:]))
	lk, err := lockFile(ctx, c.t.lockPath(tmp), unix.LOCK_EX, false)
	if err != nil {
		return nil, "", fmt.Errorf("unpack a layer being written: %w", err)
	}
	defer func() {
		os.Remove(c.t.lockPath(tmp))
		lk.close()
	}()
	stage, err := c.t.stagingDir(tmp)
	if err != nil {
		return nil, "", err
	}
	diffID, err := c.stageTar(ctx, stage, pl, r)
	if err != nil {
		removeStaging(stage)
		return nil, "", fmt.Errorf("unpack a layer being written: %w", err)
	}
	chain := diffID
	if pl != nil {
		chain = identity.ChainID([]digest.Digest{pl.ChainID, diffID})
	}
	l, err := c.publishStaged(ctx, stage, pl, chain)
	if err != nil {
		removeStaging(stage)
		return nil, "", fmt.Errorf("unpack chain %s: %w", chain, err)
	}
	return l, diffID, nil
}

// stageTar applies the tar r yields over a hard-linked clone of parent
// (nil: over nothing) in stage, and returns its digest.
func (c *Cache) stageTar(ctx context.Context, stage string, parent *Lease, r io.Reader) (digest.Digest, error) {
	var err error
	if parent == nil {
		err = os.Mkdir(stage, 0o755)
	} else {
		err = Clone(ctx, parent.Dir, stage, true)
	}
	if err != nil {
		return "", err
	}
	o := c.o
	o.Limits = o.Limits.withDefaults()
	a, err := newApplier(stage, o)
	if err != nil {
		return "", err
	}
	defer a.close()
	if sib := c.t.sibling(ctx, parent, ""); sib != nil { // any chain over parent
		defer sib.Release()
		if fd, err := unix.Open(sib.Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			a.sibling = fd
		}
	}
	d := digest.SHA256.Digester()
	src := io.TeeReader(r, d.Hash())
	if err := a.apply(ctx, tar.NewReader(src)); err != nil {
		return "", err
	}
	if err := drainTrailing(src); err != nil {
		return "", err
	}
	return d.Digest(), nil
}

// publishStaged makes stage chain's entry, unless another process made
// it meanwhile, and leases it.
func (c *Cache) publishStaged(ctx context.Context, stage string, parent *Lease, chain digest.Digest) (*Lease, error) {
	lk, done, err := c.lockToBuild(ctx, chain)
	if err != nil {
		return nil, err
	}
	if done != nil {
		removeStaging(stage)
		return done, nil
	}
	final := c.t.chainDir(chain)
	present, err := c.t.keepOrDrop(chain)
	if err == nil && !present {
		err = c.t.publish(stage, chain)
	}
	if err != nil {
		lk.close()
		return nil, err
	}
	if present {
		removeStaging(stage)
	} else {
		c.t.noteSibling(parent, chain)
	}
	if err := lk.lock(ctx, unix.LOCK_SH, true); err != nil {
		lk.close()
		return nil, err
	}
	if _, err := os.Lstat(final); err != nil {
		lk.close()
		return nil, errGone
	}
	return &Lease{Dir: final, ChainID: chain, lock: lk}, nil
}
