package manifest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// rootfsLayers is the only rootfs type image-spec defines.
const rootfsLayers = "layers"

// missingHistory is the comment of the history entries Append invents for
// base layers that the base image's history does not account for, so that
// history and diff_ids line up again (BuildKit pads the same way).
const missingHistory = "imgtool: history of this layer is missing from the base image"

// Step is one change to an image as its history records it: a layer, or,
// with Layer nil, a change to the config alone (ENV, CMD, ...), which
// history marks as an empty layer.
type Step struct {
	Layer     *LayerDesc
	CreatedBy string // the instruction, e.g. `COPY . /app` or `imgtool import`
	Comment   string
}

// AppendOptions says what time a new image records.
type AppendOptions struct {
	// Created is the build's time (the caller reads the clock; this package
	// does not, so that tests and callers decide). Zero records no time.
	Created time.Time
	// SourceDateEpoch, when set, replaces Created for the image and for
	// every new history entry, so that two builds of the same inputs give
	// the same config digest whenever and wherever they run.
	SourceDateEpoch *time.Time
}

// created returns the time to record, in UTC so that the build host's time
// zone does not leak into the config.
func (o AppendOptions) created() *time.Time {
	t := o.Created
	if o.SourceDateEpoch != nil {
		t = *o.SourceDateEpoch
	}
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// Append returns base with steps added: each layer's DiffID appended to
// rootfs.diff_ids, one history entry per step, and the image's created time
// set. base may be the zero Image (an image from scratch or an import); its
// platform and runtime config are kept as they are, and its history entries
// keep their times (they describe the base, not this build).
//
// When base has fewer layer entries in its history than diff_ids, entries
// are added for the missing ones so that history and diff_ids agree again;
// when it has more, the base is inconsistent and Append fails.
func Append(base ocispec.Image, steps []Step, opts AppendOptions) (ocispec.Image, error) {
	img := base
	// Copy what is appended to, so that base (often shared with the caller's
	// view of the base image) is never modified through a shared array.
	img.RootFS.DiffIDs = slices.Clone(base.RootFS.DiffIDs)
	img.History = slices.Clone(base.History)
	switch img.RootFS.Type {
	case "":
		img.RootFS.Type = rootfsLayers
	case rootfsLayers:
	default:
		return ocispec.Image{}, fmt.Errorf("append to image: %w: rootfs type %q (only %q is defined)", ErrInvalid, img.RootFS.Type, rootfsLayers)
	}
	n, want := layerEntries(img.History), len(img.RootFS.DiffIDs)
	if n > want {
		return ocispec.Image{}, fmt.Errorf("append to image: %w: base history describes %d layers but it has %d", ErrInvalid, n, want)
	}
	for ; n < want; n++ {
		img.History = append(img.History, ocispec.History{Comment: missingHistory})
	}
	created := opts.created()
	for i, s := range steps {
		h := ocispec.History{Created: clone(created), CreatedBy: s.CreatedBy, Comment: s.Comment, EmptyLayer: s.Layer == nil}
		if s.Layer != nil {
			if err := s.Layer.DiffID.Validate(); err != nil {
				return ocispec.Image{}, fmt.Errorf("append to image: step %d (%s): diff_id %q: %w", i, s.CreatedBy, s.Layer.DiffID, err)
			}
			img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, s.Layer.DiffID)
		}
		img.History = append(img.History, h)
	}
	img.Created = created
	return img, nil
}

// layerEntries counts the history entries that stand for a layer.
func layerEntries(h []ocispec.History) int {
	n := 0
	for _, e := range h {
		if !e.EmptyLayer {
			n++
		}
	}
	return n
}

func clone[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// ParseSourceDateEpoch parses a SOURCE_DATE_EPOCH value (decimal seconds
// since 1970, as reproducible-builds.org specifies). The empty string means
// unset and gives nil. The caller reads the environment; this package does
// no I/O.
func ParseSourceDateEpoch(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || strings.HasPrefix(s, "+") {
		return nil, fmt.Errorf("parse SOURCE_DATE_EPOCH %q: want whole seconds since 1970-01-01 UTC, such as $(git log -1 --format=%%ct)", s)
	}
	t := time.Unix(n, 0).UTC()
	return &t, nil
}

// ParseConfig decodes an image config read from outside (a registry, an
// archive) and checks what later steps rely on: a platform, rootfs type
// "layers", and diff_ids that are well-formed digests. History is not held
// to match diff_ids here, because real images break that rule and still run;
// Append and Image, which write configs, do hold it.
func ParseConfig(raw []byte) (ocispec.Image, error) {
	var img ocispec.Image
	if err := json.Unmarshal(raw, &img); err != nil {
		return ocispec.Image{}, fmt.Errorf("parse config: %w: %v", ErrInvalid, err)
	}
	if err := checkConfig(img); err != nil {
		return ocispec.Image{}, fmt.Errorf("parse config: %w", err)
	}
	return img, nil
}

// checkConfig holds the rules every config must meet, read or written.
func checkConfig(img ocispec.Image) error {
	if img.OS == "" || img.Architecture == "" {
		return fmt.Errorf("%w: config has no os or architecture (os %q, architecture %q)", ErrInvalid, img.OS, img.Architecture)
	}
	if img.RootFS.Type != rootfsLayers {
		return fmt.Errorf("%w: rootfs type %q, want %q", ErrInvalid, img.RootFS.Type, rootfsLayers)
	}
	for i, d := range img.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("%w: diff_id %d %q: %v", ErrInvalid, i, d, err)
		}
	}
	return nil
}
