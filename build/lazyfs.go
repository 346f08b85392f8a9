package build

import (
	"context"
	"fmt"

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
		t, err := s.r.materialiseTree(ctx, "stage-", s.layers)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", s.label, err)
		}
		s.rootfs = t
	}
	return s.rootfs, nil
}

// stageTree is a built stage's root filesystem, for COPY --from and
// bind mounts: the one its steps ran in, or one made from its layers.
func (r *buildRun) stageTree(ctx context.Context, st *stageResult) (*tree, error) {
	if st.rootfs == nil {
		t, err := r.materialiseTree(ctx, "stage-", st.layers)
		if err != nil {
			return nil, err
		}
		st.rootfs = t
	}
	return st.rootfs, nil
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
		rc, err := src.Fetch(ctx, l.Descriptor)
		if err != nil {
			return fmt.Errorf("fetch cached layer %s: %w", l.Digest, err)
		}
		err = store.Put(ctx, r.b.Store, l.Descriptor, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("fetch cached layer %s: %w", l.Digest, err)
		}
	}
	return nil
}
