package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// platformFlags are the flags that choose what of a multi-platform index
// moves.
type platformFlags struct {
	platform string
	all      bool
	jobs     int
}

func (p *platformFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&p.platform, "platform", "", "platform to take from a multi-platform image, os/arch[/variant] (default: this machine's)")
	cmd.Flags().BoolVarP(&p.all, "all-platforms", "a", false, "copy a multi-platform image whole")
	cmd.Flags().IntVarP(&p.jobs, "jobs", "j", 0, "blobs to move at once (default: 4 or the CPU count, whichever is larger)")
}

func (p *platformFlags) options() (transport.Options, error) {
	if p.platform != "" && p.all {
		return transport.Options{}, usageError{errors.New("--platform and --all-platforms exclude each other")}
	}
	plat, err := manifest.ParsePlatform(p.platform)
	if err != nil {
		return transport.Options{}, usageError{err}
	}
	return transport.Options{Platform: plat, AllPlatforms: p.all, Jobs: p.jobs}, nil
}

// transferJob is one run of transport.Copy for each image src offers.
type transferJob struct {
	src, dst transport.Location
	opts     transport.Options
	// name gives the destination name of each source image.
	name func(store.Image) (string, error)
	// verb is what the summary line says was done.
	verb string
	// scoped keeps source registry hosts in repository paths when the
	// destination is a registry root (bundlename.Repository).
	scoped bool
}

// run opens both ends, copies, and closes the destination only when every
// image made it (an archive is then renamed into place; otherwise removed).
func (o *globalOptions) transfer(ctx context.Context, cmd *cobra.Command, j transferJob) error {
	var s *store.Store
	if j.src.Kind == transport.Store || j.dst.Kind == transport.Store {
		var err error
		if s, err = o.openStore(ctx); err != nil {
			return err
		}
		defer s.Close()
	}
	env := o.env(s)
	src, err := transport.OpenSource(ctx, j.src, env)
	if err != nil {
		return err
	}
	defer src.Close()
	images, err := src.Images(ctx)
	if err != nil {
		return err
	}
	if root, ok := registryRoot(j.dst); ok {
		return o.transferToRoot(ctx, cmd, env, src, images, root, j)
	}
	if len(images) > 1 && j.dst.Ref != "" {
		return fmt.Errorf("%s holds %d images and %s names one: add :REF to the source to pick it", j.src, len(images), j.dst)
	}
	dst, err := transport.OpenDestination(ctx, j.dst, env)
	if err != nil {
		return err
	}
	disp := newDisplay(ctx, o.progress, os.Stderr)
	j.opts.Progress = disp
	var done []ocispec.Descriptor
	var names []string
	for _, im := range images {
		n, err := j.name(im)
		if err == nil {
			var d ocispec.Descriptor
			d, err = transport.Copy(ctx, src, dst, im, n, j.opts)
			done, names = append(done, d), append(names, n)
		}
		if err != nil {
			disp.Wait()
			dst.Abort()
			return err
		}
	}
	disp.Wait()
	if err := dst.Close(); err != nil {
		return err
	}
	for i, d := range done {
		if o.progress != "quiet" {
			fmt.Fprintf(os.Stderr, "%s %s as %s\n", j.verb, d.Digest, displayRef(names[i], j.dst))
		}
		fmt.Fprintln(cmd.OutOrStdout(), d.Digest)
	}
	return nil
}

func displayRef(n string, dst transport.Location) string {
	if n == "" {
		return "<none>"
	}
	if dst.Kind == transport.Store {
		if full, err := store.NormalizeRef(n); err == nil {
			return full
		}
	}
	if dst.Kind == transport.Store || dst.Kind == transport.Registry {
		return n
	}
	return n + " in " + dst.Kind.String() + ":" + dst.Path
}

func sourceName(im store.Image) (string, error) { return im.Name, nil }

func fixedName(n string) func(store.Image) (string, error) {
	return func(store.Image) (string, error) { return n, nil }
}

func newPullCmd(o *globalOptions) *cobra.Command {
	var pf platformFlags
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image into the local store",
		Long: `Pull an image from a registry, or from an OCI layout or archive, into the local store.

REF is a registry reference (busybox, quay.io/org/app:1, docker://reg/app@sha256:...)
or a transport: oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF].
Blobs already in the store are not fetched again.`,
		Example: `  imgtool pull busybox
  imgtool pull --platform linux/arm64 127.0.0.1:5000/app:1
  imgtool pull oci-archive:app.tar`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := transport.ParseLocation(args[0], transport.Registry)
			if err != nil {
				return usageError{err}
			}
			opts, err := pf.options()
			if err != nil {
				return err
			}
			return o.transfer(cmd.Context(), cmd, transferJob{src: src, dst: transport.Location{Kind: transport.Store}, opts: opts, name: sourceName, verb: "Pulled"})
		},
	}
	pf.register(cmd)
	return cmd
}

func newPushCmd(o *globalOptions) *cobra.Command {
	var pf platformFlags
	cmd := &cobra.Command{
		Use:   "push REF [DEST]",
		Short: "Push an image from the local store to a registry",
		Long: `Push image REF of the local store to DEST (default: REF itself).

DEST is a registry reference or a transport (oci:DIR[:REF], oci-archive:FILE[:REF],
docker-archive:FILE[:REF]). Blobs the registry already has are not sent. A
multi-platform image is pushed whole unless --platform picks one image of it.`,
		Example: `  imgtool push 127.0.0.1:5000/app:1
  imgtool push app:1 registry.example.com/team/app:1`,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dest := args[0]
			if len(args) == 2 {
				dest = args[1]
			}
			dst, err := transport.ParseLocation(dest, transport.Registry)
			if err != nil {
				return usageError{err}
			}
			opts, err := pf.options()
			if err != nil {
				return err
			}
			opts.AllPlatforms = pf.platform == ""
			return o.transfer(cmd.Context(), cmd, transferJob{
				src: transport.Location{Kind: transport.Store, Ref: args[0]}, dst: dst, opts: opts,
				name: destName(dst), verb: "Pushed",
			})
		},
	}
	pf.register(cmd)
	return cmd
}

// destName names each image at dst: dst's own reference when it has one,
// else the image's name at the source.
func destName(dst transport.Location) func(store.Image) (string, error) {
	if dst.Ref != "" {
		return fixedName(dst.Ref)
	}
	return sourceName
}

func newCopyCmd(o *globalOptions) *cobra.Command {
	var pf platformFlags
	var scoped bool
	cmd := &cobra.Command{
		Use:     "copy SRC DST",
		Aliases: []string{"cp"},
		Short:   "Copy an image between registries, OCI layouts and archives",
		Long: `Copy an image from SRC to DST without going through the local store.

Both take skopeo's transports: docker://REF (or a plain reference), oci:DIR[:REF],
oci-archive:FILE[:REF], docker-archive:FILE[:REF].

A destination that names a registry and no image, docker://HOST[:PORT] (a host
with a dot, or localhost; any host with a trailing slash: docker://HOST:PORT/),
or a namespace in it (docker://HOST/PREFIX/, trailing slash), receives every
image of SRC under its own repository path and tag, its source registry host
dropped (referrers by digest); multi-platform images go whole unless --platform
picks one (--scoped keeps the source registry host: quay.io/org/app goes to
HOST/quay.io/org/app). This carries an 'imgtool save' bundle into a registry.`,
		Example: `  imgtool copy quay.io/org/app:1 127.0.0.1:5000/app:1
  imgtool copy oci-archive:bundle.tar docker://127.0.0.1:5000
  imgtool copy --all-platforms docker://busybox oci:./layout:busybox
  imgtool copy oci-archive:bundle.tar docker://127.0.0.1:5000/app:1`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := transport.ParseLocation(args[0], transport.Registry)
			if err != nil {
				return usageError{err}
			}
			dst, err := transport.ParseLocation(args[1], transport.Registry)
			if err != nil {
				return usageError{err}
			}
			opts, err := pf.options()
			if err != nil {
				return err
			}
			return o.transfer(cmd.Context(), cmd, transferJob{src: src, dst: dst, opts: opts, name: destName(dst), verb: "Copied", scoped: scoped})
		},
	}
	pf.register(cmd)
	cmd.Flags().BoolVar(&scoped, "scoped", false, "into a registry root: keep each image's source registry host as the first component of its repository (as skopeo sync --scoped)")
	return cmd
}
