//go:build !imgtool_lean

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/imgtool/imgtool/registry"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newRegistryImportCmd(o *globalOptions) *cobra.Command {
	var opts registry.ImportOptions
	var format string
	var storage storageOptions
	cmd := &cobra.Command{
		Use:   "import BUNDLE.tar",
		Short: "Write the images of an OCI archive bundle into the registry's storage, no server needed",
		Long: `Write every image of an OCI archive (imgtool save --format oci, or skopeo's
oci-archive:) into the registry's data under <root>/registry, as if each had
been pushed: the repository and tag come from each image's full reference in
the archive's index.json (io.containerd.image.name, as imgtool save, docker 25
and containerd write it), without its registry host unless --scoped (two images
that would then share a repository and tag are refused); referrers keep their
subject, and every manifest is stored byte for byte, so every digest stays the
one that was saved. A server may be running on the same data meanwhile.

Nothing is written until the whole bundle has been checked: every manifest
parsed and every blob the registry lacks hashed. Blobs and manifests the
registry already has are neither read nor rewritten, so importing a bundle a
second time changes nothing. BUNDLE may be - to read standard input.`,
		Example: `  imgtool --root /srv/imgtool registry import bundle.tar
  imgtool --root /srv/imgtool registry import --repository team/app app-oci.tar
  imgtool --root /srv/imgtool registry serve --addr 0.0.0.0:5000`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return usageError{fmt.Errorf("--format %q: want table or json", format)}
			}
			path := args[0]
			if path == "-" {
				if term.IsTerminal(int(os.Stdin.Fd())) {
					return usageError{errors.New("registry import: standard input is a terminal: name the bundle file or pipe one in")}
				}
				spooled, cleanup, err := spool(o.root, os.Stdin)
				if err != nil {
					return err
				}
				defer cleanup()
				path = spooled
			}
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("import bundle: %w", err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("import bundle: %w", err)
			}
			// The driver makes directories as it writes: a refused bundle
			// leaves not even an empty data directory behind.
			drv, _, err := openStorage(cmd.Context(), storage, o.root, false)
			if err != nil {
				return err
			}
			rep, err := registry.New(drv, registry.Options{}).Import(cmd.Context(), f, fi.Size(), opts)
			if err != nil {
				return err
			}
			if format == "json" {
				return printImportJSON(cmd.OutOrStdout(), rep)
			}
			return printImportReport(cmd.OutOrStdout(), rep)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "report format: table or json")
	cmd.Flags().StringVar(&opts.Repository, "repository", "", "repository for the images the bundle names only by tag (skopeo oci-archive:FILE:TAG) or not at all (buildx type=oci without a name)")
	addStorageFlags(cmd.Flags(), &storage)
	cmd.Flags().BoolVar(&opts.Scoped, "scoped", false, "keep each image's registry host as the first component of its repository (quay.io/org/app stays quay.io/org/app), as skopeo sync --scoped")
	return cmd
}

// printImportReport lists each image with what happened to it, then the
// totals.
func printImportReport(out io.Writer, rep *registry.ImportReport) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tSTATUS")
	for _, im := range rep.Images {
		tag := im.Tag
		if tag == "" {
			tag = "<none>"
		}
		status := "imported"
		switch {
		case im.Present:
			status = "already present"
		case im.Moved != "":
			status = "imported (tag moved from " + im.Moved.String() + ")"
		}
		if im.Subject != "" {
			status += ", refers to " + im.Subject.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", im.Repository, tag, im.Digest, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "%d blob(s) written (%d bytes), %d already present\n", rep.BlobsWritten, rep.BytesWritten, rep.BlobsPresent)
	return err
}

// importJSON is the report of --format json, in the spelling of
// `imgtool images --format json`.
type importJSON struct {
	Images       []importedJSON
	BlobsWritten int
	BlobsPresent int
	BytesWritten int64
}

type importedJSON struct {
	Repository string
	Tag        string `json:",omitempty"`
	Digest     string
	MediaType  string
	Subject    string `json:",omitempty"`
	Status     string // "imported" or "present"
	Previous   string `json:",omitempty"` // what a moved tag named
}

func printImportJSON(out io.Writer, rep *registry.ImportReport) error {
	j := importJSON{Images: []importedJSON{}, BlobsWritten: rep.BlobsWritten, BlobsPresent: rep.BlobsPresent, BytesWritten: rep.BytesWritten}
	for _, im := range rep.Images {
		e := importedJSON{Repository: im.Repository, Tag: im.Tag, Digest: im.Digest.String(), MediaType: im.MediaType,
			Subject: string(im.Subject), Previous: string(im.Moved), Status: "imported"}
		if im.Present {
			e.Status = "present"
		}
		j.Images = append(j.Images, e)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(j)
}
