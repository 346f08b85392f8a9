//go:build !imgtool_lean

package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/imgtool/imgtool/registry"
	"github.com/spf13/cobra"
)

func newRegistryCmd(o *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run an OCI distribution registry",
	}
	cmd.AddCommand(newRegistryServeCmd(o), newRegistryUserCmd(o), newRegistryGCCmd(o), newRegistryImportCmd(o))
	return cmd
}

func newRegistryServeCmd(o *globalOptions) *cobra.Command {
	var (
		addr      string
		sparse    bool
		grace     time.Duration
		uploadTTL time.Duration
		accessLog bool
		storage   storageOptions
		sec       serveSecurity
		gcEvery   time.Duration
		gcOpts    registry.GCOptions
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the OCI distribution API (v1.1) from a directory",
		Long: `Serve the OCI distribution API (v1.1) from a directory or S3: pushes and
pulls in OCI and Docker v2 formats (tested with podman, skopeo, crane,
containerd, oras and cosign); referrers; sha256 and sha512; chunked,
resumable uploads; deletes; HTTPS, htpasswd logins and bearer tokens.

Data lives under <root>/registry (--root or IMGTOOL_ROOT). The address
actually bound is printed on stdout (useful with port 0).
SIGTERM or SIGINT stop accepting connections and let requests in flight
finish for --grace.`,
		Args:    exactArgs(0),
		PreRunE: func(cmd *cobra.Command, _ []string) error { return sec.loadConfig(cmd, o) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := registry.Options{AllowSparse: sparse, UploadTTL: uploadTTL}
			if err := sec.configure(cmd.ErrOrStderr(), o.root, addr, &opts); err != nil {
				return err
			}
			drv, err := newStorageDriver(cmd.Context(), storage, o.root)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", addr, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), ln.Addr().String())
			if accessLog {
				opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
			}
			reg := registry.New(drv, opts)
			if gcEvery > 0 {
				gcOpts.UploadTTL = uploadTTL
				go reg.CollectEvery(cmd.Context(), gcEvery, gcOpts, slog.New(slog.NewTextHandler(os.Stderr, nil)))
			}
			return sec.serve(cmd.Context(), reg, ln, grace)
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:5000", "address to listen on (port 0 picks a free port)")
	f.BoolVar(&sparse, "allow-sparse", false, "accept manifests whose blobs or child manifests were not pushed")
	f.DurationVar(&grace, "grace", 30*time.Second, "how long requests in flight may finish after SIGTERM")
	f.DurationVar(&uploadTTL, "upload-ttl", 7*24*time.Hour, "delete upload sessions left unfinished for this long (0: never)")
	f.BoolVar(&accessLog, "access-log", true, "log one line per request on stderr")
	f.DurationVar(&gcEvery, "gc-interval", 0, "run a garbage collection this often while serving (0: never; see registry gc)")
	f.DurationVar(&gcOpts.Grace, "gc-grace", time.Hour, "with --gc-interval: keep everything written, linked or checked more recently")
	f.BoolVar(&gcOpts.DeleteUntagged, "gc-delete-untagged", false, "with --gc-interval: also delete manifests no tag, index or subject keeps")
	addStorageFlags(f, &storage)
	sec.addFlags(f)
	return cmd
}
