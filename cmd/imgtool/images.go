package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/imgtool/imgtool/store"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// imageInfo is a row of `imgtool images`, and its JSON form.
type imageInfo struct {
	Repository string     `json:"repository"`
	Tag        string     `json:"tag"`
	Name       string     `json:"name,omitempty"`
	Digest     string     `json:"digest"`
	MediaType  string     `json:"mediaType"`
	Size       int64      `json:"size"`
	Created    *time.Time `json:"created,omitempty"`
}

func describe(ctx context.Context, s *store.Store, im store.Image) imageInfo {
	info := imageInfo{Repository: "<none>", Tag: "<none>", Name: im.Name, Digest: im.Descriptor.Digest.String(), MediaType: im.Descriptor.MediaType}
	if ref, err := name.ParseReference(im.Name); err == nil {
		info.Repository = canonicalRepo(ref)
		if _, ok := ref.(name.Tag); ok {
			info.Tag = ref.Identifier()
		}
	}
	info.Size, _ = s.Size(ctx, im.Descriptor)
	if cfg, err := readConfig(ctx, s, im.Descriptor); err == nil && cfg.Created != nil {
		info.Created = cfg.Created
	}
	return info
}

// readConfig reads the image config of a manifest, or of the native
// platform's manifest of an index, with the fields Docker adds to OCI's
// (Healthcheck, OnBuild, Shell), which built images carry.
func readConfig(ctx context.Context, s *store.Store, d ocispec.Descriptor) (dockerspec.DockerOCIImage, error) {
	m, err := store.ImageManifest(ctx, s, d)
	if err != nil {
		return dockerspec.DockerOCIImage{}, err
	}
	raw, err := store.ReadManifest(ctx, s, m.Config)
	if err != nil {
		return dockerspec.DockerOCIImage{}, err
	}
	// Not manifest.ParseConfig: inspect shows what is there, valid or not.
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return dockerspec.DockerOCIImage{}, fmt.Errorf("read config %s: %w", m.Config.Digest, err)
	}
	return cfg, nil
}

func newImagesCmd(o *globalOptions) *cobra.Command {
	var format string
	var noTrunc bool
	cmd := &cobra.Command{
		Use:     "images",
		Aliases: []string{"ls"},
		Short:   "List the images in the local store",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return usageError{fmt.Errorf("--format %q: want table or json", format)}
			}
			return o.withStore(cmd, func(ctx context.Context, s *store.Store) error {
				return listImages(ctx, cmd, s, format, noTrunc)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "show full digests")
	return cmd
}

func listImages(ctx context.Context, cmd *cobra.Command, s *store.Store, format string, noTrunc bool) error {
	list, err := s.List(ctx)
	if err != nil {
		return err
	}
	rows := make([]imageInfo, 0, len(list))
	for _, im := range list {
		rows = append(rows, describe(ctx, s, im))
	}
	if format == "json" {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tSIZE\tCREATED")
	for _, r := range rows {
		dg := r.Digest
		if !noTrunc {
			dg = shortDigest(dg)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Repository, r.Tag, dg, humanSize(r.Size), ago(r.Created))
	}
	return tw.Flush()
}

// canonicalRepo is the repository part of store.Canonical.
func canonicalRepo(ref name.Reference) string {
	c := store.Canonical(ref)
	return c[:len(c)-len(ref.Identifier())-1]
}

func ago(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "N/A"
	}
	d := time.Since(*t)
	switch {
	case d < time.Minute:
		return "Less than a minute ago"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours ago", int(d.Hours()))
	case d < 60*24*time.Hour:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	case d < 730*24*time.Hour:
		return fmt.Sprintf("%d months ago", int(d.Hours()/24/30))
	}
	return fmt.Sprintf("%d years ago", int(d.Hours()/24/365))
}

func newTagCmd(o *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "tag SOURCE TARGET",
		Short:   "Give an image of the local store another name",
		Example: "  imgtool tag busybox 127.0.0.1:5000/busybox:1",
		Args:    exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := store.NormalizeRef(args[1]); err != nil {
				return usageError{err}
			}
			return o.withStore(cmd, func(ctx context.Context, s *store.Store) error {
				im, err := s.Resolve(ctx, args[0])
				if err != nil {
					return err
				}
				return s.Set(ctx, args[1], im.Descriptor)
			})
		},
	}
}

func newRmiCmd(o *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "rmi REF...",
		Aliases: []string{"rm"},
		Short:   "Remove image names from the local store (imgtool prune frees their blobs)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("rmi: name at least one image")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withStore(cmd, func(ctx context.Context, s *store.Store) error {
				var errs []error
				for _, ref := range args {
					removed, err := s.Untag(ctx, ref)
					if err != nil {
						errs = append(errs, err)
						continue
					}
					for _, r := range removed {
						fmt.Fprintf(cmd.OutOrStdout(), "Untagged: %s\n", r)
					}
				}
				return errors.Join(errs...)
			})
		},
	}
}

func newInspectCmd(o *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect REF",
		Short: "Print an image's manifest and config as JSON",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withStore(cmd, func(ctx context.Context, s *store.Store) error {
				return inspect(ctx, cmd, s, args[0])
			})
		},
	}
}

func inspect(ctx context.Context, cmd *cobra.Command, s *store.Store, ref string) error {
	im, err := s.Resolve(ctx, ref)
	if err != nil {
		return err
	}
	raw, err := store.ReadManifest(ctx, s, im.Descriptor)
	if err != nil {
		return err
	}
	out := struct {
		Name       string                     `json:"name,omitempty"`
		Descriptor ocispec.Descriptor         `json:"descriptor"`
		Manifest   json.RawMessage            `json:"manifest"`
		Config     *dockerspec.DockerOCIImage `json:"config,omitempty"`
	}{Name: im.Name, Descriptor: im.Descriptor, Manifest: raw}
	if cfg, err := readConfig(ctx, s, im.Descriptor); err == nil {
		out.Config = &cfg
	}
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
