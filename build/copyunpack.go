package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/unpack"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/opencontainers/go-digest"
)

// When a step after a streamed COPY will need its files (a RUN over them,
// a later COPY into the stage, a stage built on this one), the layer's
// tar is teed into the unpack cache as it is written: the files are made
// while the blob is compressed, on the other cores, instead of being
// unpacked from the blob afterwards. They are made alone, as the unpack
// cache's entry for that one layer, which the stage stacks as an overlay
// layer over what it had (overlayrun.go): nothing below is cloned, and a
// rebuild after a few files changed links the rest from the last build's
// entry.

// unpackWhileWriting runs write with a writer that the layer's tar goes
// to, and makes the unpack cache's entry for that layer alone from it.
func (s *stageRun) unpackWhileWriting(ctx context.Context, write func(tee io.Writer) (manifest.LayerDesc, error)) (manifest.LayerDesc, *unpack.Lease, error) {
	type made struct {
		lease  *unpack.Lease
		diffID digest.Digest
		err    error
	}
	pr, pw := io.Pipe()
	done := make(chan made, 1)
	go func() {
		l, d, err := s.r.b.Unpack.ApplyTar(ctx, s.r.b.Store, nil, pr)
		// The writer stops at once when the unpacking failed.
		pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
		done <- made{l, d, err}
	}()
	ld, err := write(pw)
	pw.CloseWithError(err)
	m := <-done
	switch {
	case m.err != nil:
		err = errors.Join(err, m.err)
	case err == nil && m.diffID != ld.DiffID:
		err = fmt.Errorf("the layer unpacked while written has diff ID %s, the layer %s", m.diffID, ld.DiffID)
	}
	if err != nil {
		if m.lease != nil {
			m.lease.Release()
		}
		return manifest.LayerDesc{}, nil, err
	}
	return ld, m.lease, nil
}

// filesNeededLater reports whether a step after the running one may need
// the stage's files: a later instruction of the stage that changes files,
// or a later stage built FROM it, copying from it or mounting it. A
// reference spelled with a variable may name it.
func (s *stageRun) filesNeededLater() bool {
	for _, c := range s.rest {
		if changesFiles(c) {
			return true
		}
	}
	p := s.r.plan
	name := p.stages[s.idx].Name
	refs := func(ref string) bool {
		return strings.Contains(ref, "$") || ref == strconv.Itoa(s.idx) || (name != "" && strings.EqualFold(ref, name))
	}
	for _, st := range p.stages[s.idx+1:] {
		if refs(st.BaseName) {
			return true
		}
		for _, c := range st.Commands {
			switch c := c.(type) {
			case *instructions.CopyCommand:
				if c.From != "" && refs(c.From) {
					return true
				}
			case *instructions.RunCommand:
				for _, m := range instructions.GetMounts(c) {
					if m.From != "" && refs(m.From) {
						return true
					}
				}
			}
		}
	}
	return false
}
