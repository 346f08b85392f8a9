package layer

import (
	"archive/tar"
	"context"
	"fmt"
	"github.com/imgtool/imgtool/internal/compression"
	"github.com/imgtool/imgtool/manifest"
	"io"
	"strings"
)

// FromTar writes a layer holding what the tar stream r holds (compressed
// or not), entry by entry in its order: each header is re-encoded as PAX
// with the same reproducibility rules as Write (no user or group names,
// whole-second mtimes clamped to the source date epoch), so that a
// malformed tar fails here rather than in every client that pulls it.
func FromTar(ctx context.Context, w io.Writer, r io.Reader, o Options) (manifest.LayerDesc, error) {
	in, _, err := compression.Decompress(r)
	if err != nil {
		return manifest.LayerDesc{}, err
	}
	defer in.Close()
	p, err := newPipeline(w, o)
	if err != nil {
		return manifest.LayerDesc{}, err
	}
	if err := copyTar(ctx, p.tw, tar.NewReader(in), o); err != nil {
		p.abort()
		return manifest.LayerDesc{}, fmt.Errorf("write layer from tar: %w", err)
	}
	d, err := p.finish()
	if err != nil {
		return manifest.LayerDesc{}, fmt.Errorf("write layer from tar: %w", err)
	}
	return d, nil
}

func copyTar(ctx context.Context, tw *tar.Writer, tr *tar.Reader, o Options) error {
	copyBuf := make([]byte, 256<<10)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		typ := h.Typeflag
		if typ == tar.TypeGNUSparse {
			typ = tar.TypeReg // archive/tar reads it filled in; written plainly
		}
		out := &tar.Header{
			Typeflag: typ, Name: h.Name, Linkname: h.Linkname, Size: h.Size, Mode: h.Mode,
			Uid: h.Uid, Gid: h.Gid, ModTime: clamp(h.ModTime.Truncate(1e9), o.SourceDateEpoch),
			Devmajor: h.Devmajor, Devminor: h.Devminor, Format: tar.FormatPAX,
		}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				if out.PAXRecords == nil {
					out.PAXRecords = map[string]string{}
				}
				out.PAXRecords[k] = v
			}
		}
		if err := tw.WriteHeader(out); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		if typ == tar.TypeReg {
			if _, err := io.CopyBuffer(tw, tr, copyBuf); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		}
	}
}
