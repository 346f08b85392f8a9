package build

import (
	"context"
	"slices"
	"strings"

	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/manifest"
)

// addLayer makes a layer of the paths w wrote (and the directories above
// them, as docker's layers hold them), writes it into the store and
// records the step. A step that wrote nothing is an empty layer in the
// history, as in docker.
func (s *stageRun) addLayer(ctx context.Context, w *fsWriter, createdBy string) error {
	if err := w.restoreModes(); err != nil {
		return err
	}
	var changes []layer.Change
	seen := map[string]bool{}
	for p := range w.written {
		for q := p; q != "." && q != "" && !seen[q]; q = parentOf(q) {
			seen[q] = true
			changes = append(changes, layer.Change{Path: q, Kind: layer.Add})
		}
	}
	return s.writeLayer(ctx, s.rootfs.root, changes, createdBy)
}

// writeLayer writes changes (in any order) of the tree at root as a layer
// of the stage.
func (s *stageRun) writeLayer(ctx context.Context, root string, changes []layer.Change, createdBy string) error {
	if len(changes) == 0 {
		s.steps = append(s.steps, manifest.Step{CreatedBy: createdBy})
		return nil
	}
	ld, err := s.r.writeLayer(ctx, root, changes)
	if err != nil {
		return err
	}
	s.layers = append(s.layers, ld)
	s.steps = append(s.steps, manifest.Step{Layer: &ld, CreatedBy: createdBy})
	return nil
}

// writeLayer writes changes (in any order) of the tree at root as a layer
// into the store.
func (r *buildRun) writeLayer(ctx context.Context, root string, changes []layer.Change) (manifest.LayerDesc, error) {
	slices.SortFunc(changes, func(a, b layer.Change) int { return layer.ComparePaths(a.Path, b.Path) })
	bw, err := r.b.Store.Writer(ctx)
	if err != nil {
		return manifest.LayerDesc{}, err
	}
	defer bw.Cancel()
	ld, err := layer.Write(ctx, bw, root, layer.List(changes), r.layerOpts)
	if err != nil {
		return manifest.LayerDesc{}, err
	}
	ld.Descriptor, err = bw.Commit(ctx, ld.Descriptor)
	return ld, err
}

func parentOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}
