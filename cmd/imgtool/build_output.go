//go:build !imgtool_lean

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/imgtool/imgtool/build"
	"github.com/imgtool/imgtool/internal/atomicfile"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	"github.com/imgtool/imgtool/unpack"
)

// output is one place --output or --push writes the built image: an
// image location, or the image's flattened filesystem as a directory
// (local) or a tar file (tar; "-" for standard output).
type output struct {
	loc        transport.Location
	local, tar string
}

// parseOutputs parses buildx's --output syntax: type=oci|oci-archive|
// docker-archive with dest=PATH, type=registry (also type=image with
// push=true) with name=REF, type=local,dest=DIR and type=tar,dest=FILE,
// and buildx's shorthands "-" (a tar on standard output) and a bare path
// (local).
func parseOutputs(list []string) ([]output, error) {
	var out []output
	for _, s := range list {
		if s == "-" {
			out = append(out, output{tar: "-"})
			continue
		}
		if !strings.Contains(s, "=") {
			out = append(out, output{local: s})
			continue
		}
		attrs := map[string]string{}
		for _, f := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("--output %q: want type=TYPE,dest=PATH or type=registry,name=REF", s)
			}
			attrs[k] = v
		}
		if err := checkOutputAttrs(s, attrs); err != nil {
			return nil, err
		}
		var loc transport.Location
		switch attrs["type"] {
		case "local", "tar":
			dest := attrs["dest"]
			if dest == "" {
				return nil, fmt.Errorf("--output %q: type=%s needs dest=PATH", s, attrs["type"])
			}
			if attrs["type"] == "local" {
				out = append(out, output{local: dest})
			} else {
				out = append(out, output{tar: dest})
			}
			continue
		case "oci":
			loc.Kind = transport.OCILayout
		case "oci-archive":
			loc.Kind = transport.OCIArchive
		case "docker-archive", "docker":
			loc.Kind = transport.DockerArchive
		case "registry":
			loc.Kind = transport.Registry
		case "image":
			if attrs["push"] != "true" {
				return nil, fmt.Errorf("--output %q: type=image writes to the local store, which every build does; add push=true to push", s)
			}
			loc.Kind = transport.Registry
		default:
			return nil, fmt.Errorf("--output %q: unknown type %q; want oci, oci-archive, docker-archive, registry, local or tar", s, attrs["type"])
		}
		if loc.Kind == transport.Registry {
			if loc.Ref = attrs["name"]; loc.Ref == "" {
				return nil, fmt.Errorf("--output %q: type=registry needs name=REF", s)
			}
		} else {
			if loc.Path = attrs["dest"]; loc.Path == "" {
				return nil, fmt.Errorf("--output %q: type=%s needs dest=PATH", s, attrs["type"])
			}
			loc.Ref = attrs["name"]
		}
		out = append(out, output{loc: loc})
	}
	return out, nil
}

// checkOutputAttrs refuses the attributes imgtool does not act on,
// rather than ignoring them: buildx's compression=gzip, silently
// ignored, would give zstd layers to a client that cannot read them.
func checkOutputAttrs(s string, attrs map[string]string) error {
	for k := range attrs {
		switch k {
		case "type", "dest", "name", "push":
		case "compression", "compression-level", "force-compression":
			return fmt.Errorf("--output %q: layers are compressed once, as they are built: give --compression zstd|gzip|none instead of %s=", s, k)
		default:
			return fmt.Errorf("--output %q: unknown attribute %q; imgtool takes type, dest, name and push", s, k)
		}
	}
	return nil
}

// exportBuild copies the built image from the store to out. Layouts and
// archives get the first tag as the image's name unless name= gave one.
func (o *globalOptions) exportBuild(ctx context.Context, s *store.Store, res build.Result, out output, tags []string, show bool) error {
	switch {
	case out.tar != "":
		return o.export(ctx, s, transport.Location{Kind: transport.Store, Ref: res.Manifest.Digest.String()}, out.tar)
	case out.local != "":
		return exportLocal(ctx, s, res, out.local, show)
	}
	name := out.loc.Ref
	if name == "" && len(tags) > 0 {
		name = tags[0]
	}
	dstLoc := out.loc
	if dstLoc.Kind != transport.Registry {
		dstLoc.Ref = "" // the name goes to Copy; the location is the file
	}
	src := transport.NewStoreSource(s, res.Manifest.Digest.String())
	defer src.Close()
	images, err := src.Images(ctx)
	if err != nil {
		return err
	}
	dst, err := transport.OpenDestination(ctx, dstLoc, o.env(s))
	if err != nil {
		return err
	}
	mode := "quiet"
	if show {
		mode = o.progress
	}
	disp := newDisplay(ctx, mode, os.Stderr)
	_, err = transport.Copy(ctx, src, dst, images[0], name, transport.Options{Progress: disp, AllPlatforms: true})
	disp.Wait()
	if err != nil {
		dst.Abort()
		return fmt.Errorf("write %s: %w", outputName(out.loc), err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("write %s: %w", outputName(out.loc), err)
	}
	if show {
		fmt.Fprintf(os.Stderr, "Wrote %s to %s\n", res.Manifest.Digest, outputName(out.loc))
	}
	return nil
}

// exportLocal unpacks the image's filesystem into dir, which must not
// exist or be empty (unpack refuses to merge into existing files).
func exportLocal(ctx context.Context, s *store.Store, res build.Result, dir string, show bool) error {
	if entries, err := os.ReadDir(dir); err == nil {
		if len(entries) > 0 {
			return fmt.Errorf("--output type=local,dest=%s: the directory is not empty", dir)
		}
		if err := os.Remove(dir); err != nil {
			return fmt.Errorf("--output type=local,dest=%s: %w", dir, err)
		}
	}
	m, err := store.ImageManifest(ctx, s, res.Manifest)
	if err != nil {
		return err
	}
	rep, err := unpack.Image(ctx, s, m, dir, unpack.Options{})
	for _, w := range rep.Warnings {
		fmt.Fprintf(os.Stderr, "warning: %s: %s\n", w.Path, w.Reason)
	}
	if err != nil {
		return fmt.Errorf("--output type=local,dest=%s: %w", dir, err)
	}
	if show {
		fmt.Fprintf(os.Stderr, "Unpacked %s into %s\n", res.Manifest.Digest, dir)
	}
	return nil
}

func outputName(l transport.Location) string {
	if l.Kind == transport.Registry {
		return l.Ref
	}
	return l.Kind.String() + ":" + l.Path
}

// writeResultFiles writes --iidfile (the image's manifest digest, the ID
// imgtool lists images by) and --metadata-file (buildx's keys), each
// atomically.
func writeResultFiles(opts *buildOptions, res build.Result) error {
	if opts.iidfile != "" {
		if err := writeAtomic(opts.iidfile, []byte(res.Manifest.Digest.String())); err != nil {
			return fmt.Errorf("--iidfile: %w", err)
		}
	}
	if opts.metadataFile == "" {
		return nil
	}
	md := map[string]any{
		"containerimage.digest":        res.Manifest.Digest,
		"containerimage.config.digest": res.Config.Digest,
		"containerimage.descriptor":    res.Manifest,
	}
	if len(opts.tags) > 0 {
		names := make([]string, len(opts.tags))
		for i, t := range opts.tags {
			n, err := store.NormalizeRef(t)
			if err != nil {
				return err
			}
			names[i] = n
		}
		md["image.name"] = strings.Join(names, ",")
	}
	raw, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(opts.metadataFile, append(raw, '\n')); err != nil {
		return fmt.Errorf("--metadata-file: %w", err)
	}
	return nil
}

// writeAtomic writes data to path through a temporary file and a rename;
// the file's mode is 0666 less the umask, as docker's.
func writeAtomic(path string, data []byte) error {
	f, err := atomicfile.Create(path, 0o666)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit()
}
