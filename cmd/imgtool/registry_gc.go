//go:build !imgtool_lean

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/imgtool/imgtool/registry"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

func newRegistryGCCmd(o *globalOptions) *cobra.Command {
	var (
		opts    registry.GCOptions
		format  string
		storage storageOptions
	)
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete what no manifest needs from a registry's storage, while it serves",
		Long: `Delete the blobs no manifest names (and, with --delete-untagged, the
manifests nothing keeps) from the data of imgtool registry serve
(<root>/registry). Safe to run while servers take pushes: nothing written,
linked or checked with HEAD within --grace is deleted, and a push racing
the collection either keeps its blobs or fails, never succeeds with a blob
missing.

--delete-untagged keeps tagged manifests, the children of kept indexes
and the referrers (signatures, SBOMs) of kept manifests; a referrer goes
with its subject. Upload sessions started more than --upload-ttl ago are
deleted too.`,
		Example: `  imgtool registry gc --dry-run --delete-untagged
  imgtool registry gc --delete-untagged --grace 30m --format json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			drv, dir, err := openStorage(cmd.Context(), storage, o.root, true)
			if err != nil {
				return err
			}
			// distribution's Walk logs every path a running server removed
			// between its List and Stat; that is expected here, not news.
			logrus.SetLevel(logrus.WarnLevel)
			rep, err := registry.GC(cmd.Context(), drv, opts)
			if err != nil {
				if errors.Is(err, cmd.Context().Err()) {
					return err
				}
				return fmt.Errorf("registry gc of %s: %w", dir, err)
			}
			if format == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					registry.GCReport
					Seconds float64 `json:"seconds"`
				}{rep, rep.Duration.Seconds()})
			}
			printGCReport(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.DryRun, "dry-run", false, "report what would be deleted; delete nothing")
	f.BoolVar(&opts.DeleteUntagged, "delete-untagged", false, "also delete manifests no tag, index or subject keeps")
	f.DurationVar(&opts.Grace, "grace", time.Hour, "keep everything written, linked or checked more recently than this")
	f.DurationVar(&opts.UploadTTL, "upload-ttl", 7*24*time.Hour, "delete upload sessions started longer ago (0: keep them)")
	f.StringVar(&format, "format", "text", "output: text or json")
	addStorageFlags(f, &storage)
	return cmd
}

func printGCReport(w io.Writer, r registry.GCReport) {
	verb := "deleted"
	if r.DryRun {
		verb = "would delete"
	}
	fmt.Fprintf(w, "%s %d manifests, %d blobs (%s), %d blob links and %d upload sessions in %d repositories (%s)\n",
		verb, r.Manifests, r.Blobs, humanSize(r.Bytes), r.Links, r.Uploads, r.Repositories, r.Duration.Round(time.Millisecond))
}
