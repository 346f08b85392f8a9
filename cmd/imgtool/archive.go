package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newSaveCmd(o *globalOptions) *cobra.Command {
	var output, format, platform string
	cmd := &cobra.Command{
		Use:   "save REF... -o FILE",
		Short: "Save images of the local store to an archive",
		Long: `Save images to one archive file (or standard output with -o -).

--format docker (the default) writes what docker save writes since docker 25: an OCI
layout plus manifest.json and repositories, which every docker load reads.
--format oci writes an OCI archive (skopeo's oci-archive:).`,
		Example: `  imgtool save -o app.tar app:1 app:2
  imgtool save --format oci -o bundle.tar busybox`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("save: name at least one image")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := transport.DockerArchive
			switch format {
			case "docker", "docker-archive":
			case "oci", "oci-archive":
				kind = transport.OCIArchive
			default:
				return usageError{fmt.Errorf("--format %q: want docker or oci", format)}
			}
			if output == "" {
				if term.IsTerminal(int(os.Stdout.Fd())) {
					return usageError{errors.New("save: refusing to write an archive to a terminal: use -o FILE")}
				}
				output = "-"
			}
			pf := platformFlags{platform: platform}
			opts, err := pf.options()
			if err != nil {
				return err
			}
			// A docker archive holds single-platform images; an OCI archive
			// keeps what the store has unless --platform picks.
			opts.AllPlatforms = platform == "" && kind == transport.OCIArchive
			return o.saveAll(cmd, args, transport.Location{Kind: kind, Path: output}, opts)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "archive to write (- for standard output)")
	cmd.Flags().StringVar(&format, "format", "docker", "archive format: docker or oci")
	cmd.Flags().StringVar(&platform, "platform", "", "platform to save from a multi-platform image")
	return cmd
}

// saveAll writes every image into one archive: one destination, one Copy
// per image, one Close at the end.
func (o *globalOptions) saveAll(cmd *cobra.Command, refs []string, dst transport.Location, opts transport.Options) error {
	ctx := cmd.Context()
	s, err := o.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	var images []store.Image
	for _, r := range refs {
		im, err := s.Resolve(ctx, r)
		if err != nil {
			return err
		}
		images = append(images, im)
	}
	d, err := transport.OpenDestination(ctx, dst, o.env(s))
	if err != nil {
		return err
	}
	src := transport.NewStoreSource(s, "")
	for _, im := range images {
		if _, err := transport.Copy(ctx, src, d, im, im.Name, opts); err != nil {
			d.Abort()
			return err
		}
	}
	if err := d.Close(); err != nil {
		return err
	}
	if o.progress != "quiet" && dst.Path != "-" {
		fmt.Fprintf(os.Stderr, "Saved %d image(s) to %s\n", len(images), dst.Path)
	}
	return nil
}

func newLoadCmd(o *globalOptions) *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from a docker or OCI archive into the local store",
		Long: `Load every image of an archive (docker save output of any docker version, or an
OCI archive) into the local store, under the names the archive gives them.
Without -i the archive is read from standard input.`,
		Example: `  imgtool load -i app.tar
  docker save busybox | imgtool load`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if input == "" || input == "-" {
				if term.IsTerminal(int(os.Stdin.Fd())) {
					return usageError{errors.New("load: standard input is a terminal: use -i FILE or pipe an archive in")}
				}
				spooled, cleanup, err := spool(o.root, os.Stdin)
				if err != nil {
					return err
				}
				defer cleanup()
				input = spooled
			}
			// The archive's kind is detected from its content.
			src := transport.Location{Kind: transport.OCIArchive, Path: input}
			return o.transfer(cmd.Context(), cmd, transferJob{src: src, dst: transport.Location{Kind: transport.Store}, opts: transport.Options{AllPlatforms: true}, name: sourceName, verb: "Loaded"})
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "archive to read (default: standard input)")
	return cmd
}

// spool copies a stream to a temporary file under root: archives need
// random access.
func spool(root string, r io.Reader) (string, func(), error) {
	dir := filepath.Join(root, "tmp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("spool standard input: %w", err)
	}
	f, err := os.CreateTemp(dir, "load-*.tar")
	if err != nil {
		return "", nil, fmt.Errorf("spool standard input: %w", err)
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	if _, err := io.Copy(f, r); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("spool standard input: %w", err)
	}
	return f.Name(), cleanup, nil
}
