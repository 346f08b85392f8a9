package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imgtool/imgtool/store/transport"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

type saveOptions struct {
	output, format, platform, imagesFrom string
	allPlatforms, referrers              bool
}

func newSaveCmd(o *globalOptions) *cobra.Command {
	var so saveOptions
	cmd := &cobra.Command{
		Use:   "save [REF...] [--images-from FILE] -o FILE",
		Short: "Save images to one archive, from the local store or from registries",
		Long: `Save images to one archive file (or standard output with -o -).

Each REF is an image of the local store; one the store lacks is read from its
registry, as run does. docker://REF always reads the registry, and oci:DIR[:REF]
or oci-archive:FILE[:REF] read a layout or an archive. --images-from reads more
references from a file (- for standard input), one a line, # starting a comment.

--format docker (the default) writes what docker save writes since docker 25: an OCI
layout plus manifest.json and repositories, which every docker load reads; it
holds one platform of each image. --format oci writes an OCI archive (skopeo's
oci-archive:): a multi-platform image is kept whole, with its index digest, unless
--platform picks one. --all-platforms and --with-referrers need an OCI archive and
choose it when --format is not given.

--with-referrers adds, from registries, the manifests that refer to each image
saved (and to each platform's manifest of an index): signatures, SBOMs and
attestations, found through the referrers API or its sha256-<hex> tag fallback,
and cosign's sha256-<hex>.sig/.att/.sbom tags; referrers of referrers too.

Every manifest is kept byte for byte and blobs that images share are stored once.
An OCI archive is what 'imgtool registry import' and 'imgtool copy' carry into a
registry with every digest unchanged (see the air-gapped workflow in README.md).`,
		Example: `  imgtool save -o app.tar app:1 app:2
  imgtool save --format oci -o bundle.tar busybox
  imgtool save --all-platforms --with-referrers --images-from images.txt -o bundle.tar`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && so.imagesFrom == "" {
				return usageError{errors.New("save: name at least one image, or a file of them with --images-from")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := so.kind()
			if err != nil {
				return err
			}
			refs := args
			if so.imagesFrom != "" {
				more, err := readImageList(so.imagesFrom)
				if err != nil {
					return err
				}
				refs = append(refs, more...)
			}
			if len(refs) == 0 {
				return usageError{fmt.Errorf("save: %s lists no images", so.imagesFrom)}
			}
			if so.output == "" {
				if term.IsTerminal(int(os.Stdout.Fd())) {
					return usageError{errors.New("save: refusing to write an archive to a terminal: use -o FILE")}
				}
				so.output = "-"
			}
			pf := platformFlags{platform: so.platform, all: so.allPlatforms}
			opts, err := pf.options()
			if err != nil {
				return err
			}
			// A docker archive holds single-platform images; an OCI archive
			// keeps indexes whole unless --platform picks.
			opts.AllPlatforms = so.platform == "" && kind == transport.OCIArchive
			return o.saveAll(cmd.Context(), refs, transport.Location{Kind: kind, Path: so.output}, opts, so.referrers)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&so.output, "output", "o", "", "archive to write (- for standard output)")
	f.StringVar(&so.format, "format", "", "archive format: docker or oci (default: docker, or oci with --all-platforms or --with-referrers)")
	f.StringVar(&so.platform, "platform", "", "platform to save from a multi-platform image")
	f.BoolVarP(&so.allPlatforms, "all-platforms", "a", false, "keep multi-platform images whole (the default of --format oci)")
	f.BoolVar(&so.referrers, "with-referrers", false, "add the signatures, SBOMs and attestations that refer to each image (from registries)")
	f.StringVar(&so.imagesFrom, "images-from", "", "file listing images to save, one a line, # for comments (- for standard input)")
	return cmd
}

func (so saveOptions) kind() (transport.Kind, error) {
	switch so.format {
	case "":
		if so.allPlatforms || so.referrers {
			return transport.OCIArchive, nil
		}
		return transport.DockerArchive, nil
	case "docker", "docker-archive":
		if so.allPlatforms || so.referrers {
			return 0, usageError{errors.New("--all-platforms and --with-referrers need --format oci: a docker archive holds one platform of each image and no referrers")}
		}
		return transport.DockerArchive, nil
	case "oci", "oci-archive":
		return transport.OCIArchive, nil
	}
	return 0, usageError{fmt.Errorf("--format %q: want docker or oci", so.format)}
}

// maxImageList bounds the references read from one --images-from file.
const maxImageList = 100000

// readImageList reads references one a line; blank lines and everything
// after a # are ignored (no reference contains #).
func readImageList(path string) ([]string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read --images-from: %w", err)
		}
		defer f.Close()
		r = f
	}
	return parseImageList(r, path)
}

func parseImageList(r io.Reader, path string) ([]string, error) {
	var refs []string
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s, _, _ := strings.Cut(sc.Text(), "#")
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.ContainsAny(s, " \t") {
			return nil, usageError{fmt.Errorf("%s:%d: %q: one image reference a line", path, line, s)}
		}
		if _, err := transport.ParseLocation(s, transport.Store); err != nil {
			return nil, usageError{fmt.Errorf("%s:%d: %w", path, line, err)}
		}
		if len(refs) == maxImageList {
			return nil, usageError{fmt.Errorf("%s: more than %d images", path, maxImageList)}
		}
		refs = append(refs, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read --images-from %s: %w", path, err)
	}
	return refs, nil
}

// saveAll writes every image into one archive: one destination, one Copy
// per image (and per referrer), one Close at the end. A failure removes
// the unfinished archive.
func (o *globalOptions) saveAll(ctx context.Context, refs []string, dst transport.Location, opts transport.Options, referrers bool) error {
	s, err := o.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	env := o.env(s)
	d, err := transport.OpenDestination(ctx, dst, env)
	if err != nil {
		return err
	}
	disp := newDisplay(ctx, o.progress, os.Stderr)
	opts.Progress = disp
	sv := &saver{store: s, env: env, dst: d, opts: opts, referrers: referrers, seen: map[string]bool{}}
	for _, r := range refs {
		if err := sv.save(ctx, r); err != nil {
			disp.Wait()
			d.Abort()
			return err
		}
	}
	disp.Wait()
	if err := d.Close(); err != nil {
		return err
	}
	if o.progress != "quiet" {
		for _, e := range sv.saved {
			fmt.Fprintf(os.Stderr, "Saved %s as %s\n", e.digest, e.name)
		}
		where := dst.Path
		if where == "-" {
			where = "standard output"
		}
		fmt.Fprintf(os.Stderr, "Saved %d image(s) and %d referrer(s) to %s\n", len(sv.saved)-sv.nrefs, sv.nrefs, where)
	}
	return nil
}
