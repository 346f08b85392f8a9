package build

import (
	"context"
	"fmt"
	"io"

	"github.com/imgtool/imgtool/internal/compression"
	"github.com/opencontainers/go-digest"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/unpack"
)

// A stage's root filesystem is made only when a step that reads or
// writes it runs: a stage whose steps all come from the cache is never
// unpacked. These functions make it from the chain of layers so far.

// tree returns the stage's root filesystem, making it from its layers
// the first time.
func (s *stageRun) tree(ctx context.Context) (*tree, error) {
	if s.rootfs == nil {
		if err := s.settle(); err != nil {
			return nil, err
		}
		t, err := s.r.materialiseTree(ctx, "stage-", s.layers)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", s.label, err)
		}
		s.rootfs = t
		s.dropStack() // the tree is the stage's filesystem from now on
	}
	return s.rootfs, nil
}

// stageTree is a built stage's root filesystem, for COPY --from and
// bind mounts: the one its steps ran in, or one made from its layers.
func (r *buildRun) stageTree(ctx context.Context, st *stageResult) (*tree, error) {
	// Stages building at once may read it together: it is made once.
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.rootfs == nil {
		t, err := r.readTree(ctx, "stage-", st.layers)
		if err != nil {
			return nil, err
		}
		st.rootfs = t
	}
	return st.rootfs, nil
}

// readTree is layers applied in order, for reading only (COPY --from,
// read-only bind mounts, the copies a read-write one takes): the unpack
// cache's entry, held until the build ends, or without the unpack cache
// a directory made for it.
func (r *buildRun) readTree(ctx context.Context, prefix string, layers []manifest.LayerDesc) (*tree, error) {
	if r.b.Unpack == nil {
		return r.materialiseTree(ctx, prefix, layers)
	}
	if err := r.ensureBlobs(ctx, layers); err != nil {
		return nil, err
	}
	l, err := r.b.Unpack.Rootfs(ctx, r.b.Store, layers)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.leases = append(r.leases, l)
	r.mu.Unlock()
	return newTree(l.Dir)
}

// materialiseTree makes a new directory under the build's temporary
// directory holding layers applied in order.
func (r *buildRun) materialiseTree(ctx context.Context, prefix string, layers []manifest.LayerDesc) (*tree, error) {
	dir, err := r.tempDir(prefix)
	if err != nil {
		return nil, err
	}
	root := dir + "/rootfs"
	if err := r.materialise(ctx, layers, root); err != nil {
		return nil, err
	}
	return newTree(root)
}

// materialise makes dest (which must not exist) hold layers applied in
// order: a copy of the unpack cache's entry for their chain, which later
// builds share, or, without the unpack cache, each layer applied in
// turn. Layers a --cache-from hit named are fetched first.
func (r *buildRun) materialise(ctx context.Context, layers []manifest.LayerDesc, dest string) error {
	if err := r.ensureBlobs(ctx, layers); err != nil {
		return err
	}
	if len(layers) > 0 && r.b.Unpack != nil {
		lease, err := r.b.Unpack.Rootfs(ctx, r.b.Store, layers)
		if err != nil {
			return err
		}
		defer lease.Release()
		if err := unpack.Clone(ctx, lease.Dir, dest, false); err != nil {
			return fmt.Errorf("copy the unpacked layers: %w", err)
		}
		return nil
	}
	if err := mkdirRootfs(dest); err != nil {
		return err
	}
	for _, l := range layers {
		if err := r.applyLayer(ctx, l, dest); err != nil {
			return err
		}
	}
	return nil
}

// applyLayer applies one layer of the store onto root.
func (r *buildRun) applyLayer(ctx context.Context, l manifest.LayerDesc, root string) error {
	if err := r.ensureBlobs(ctx, []manifest.LayerDesc{l}); err != nil {
		return err
	}
	rc, err := r.b.Store.Open(ctx, l.Digest)
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	defer rc.Close()
	if _, err := unpack.Apply(ctx, root, rc, l.Descriptor, l.DiffID, unpack.Options{Rootless: r.rootless}); err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	return nil
}

// ensureBlobs makes sure the store holds every layer, fetching those a
// --cache-from hit named from the registry that holds them.
func (r *buildRun) ensureBlobs(ctx context.Context, layers []manifest.LayerDesc) error {
	for _, l := range layers {
		if _, err := r.b.Store.Stat(ctx, l.Digest); err == nil {
			continue
		}
		src, ok := r.fetchFrom[l.Digest]
		if !ok {
			return fmt.Errorf("layer %s is missing from the store", l.Digest)
		}
		if err := r.fetchLayer(ctx, src, l); err != nil {
			return fmt.Errorf("fetch cached layer %s from %s: %w", l.Digest, src, err)
		}
	}
	return nil
}

// fetchLayer copies a layer of a registry's cache into the store: the
// store checks its digest, and its diff_id is checked here while it is
// written, since the image's config will carry the one the cache claims.
func (r *buildRun) fetchLayer(ctx context.Context, src CacheSource, l manifest.LayerDesc) error {
	rc, err := src.Fetch(ctx, l.Descriptor)
	if err != nil {
		return err
	}
	defer rc.Close()
	w, err := r.b.Store.Writer(ctx)
	if err != nil {
		return err
	}
	defer w.Cancel()
	pr, pw := io.Pipe()
	diff := make(chan error, 1)
	go func() {
		diff <- checkDiffID(pr, l.DiffID)
		pr.Close()
	}()
	_, err = io.Copy(io.MultiWriter(w, pw), io.LimitReader(rc, l.Size+1))
	pw.CloseWithError(err)
	if derr := <-diff; err == nil {
		err = derr
	}
	if err != nil {
		return err
	}
	_, err = w.Commit(ctx, l.Descriptor)
	return err
}

// checkDiffID decompresses a layer and compares the digest of its tar
// with want.
func checkDiffID(r io.Reader, want digest.Digest) error {
	if err := want.Validate(); err != nil {
		return fmt.Errorf("diff_id: %w", err)
	}
	tr, _, err := compression.Decompress(r)
	if err != nil {
		_, _ = io.Copy(io.Discard, r)
		return err
	}
	defer tr.Close()
	v := want.Verifier()
	if _, err := io.Copy(v, tr); err != nil {
		_, _ = io.Copy(io.Discard, r)
		return err
	}
	_, _ = io.Copy(io.Discard, r)
	if !v.Verified() {
		return fmt.Errorf("its content does not match the diff_id %s the cache gives: %w", want, store.ErrMismatch)
	}
	return nil
}
