package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	"github.com/spf13/cobra"
)

// version is set at link time by the Makefile.
var version = "dev"

// globalOptions are the flags every command takes.
type globalOptions struct {
	root     string
	progress string
	logLevel string
	insecure bool
	tlsVer   bool
}

func defaultRoot() string {
	if r := os.Getenv("IMGTOOL_ROOT"); r != "" {
		return r
	}
	data := os.Getenv("XDG_DATA_HOME")
	if data == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(os.TempDir(), "imgtool")
		}
		data = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(data, "imgtool")
}

func newRootCmd() *cobra.Command {
	o := &globalOptions{}
	cmd := &cobra.Command{
		Use:           "imgtool",
		Short:         "Build, serve, move and run OCI images without a daemon",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return o.validate()
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := cmd.PersistentFlags()
	f.StringVar(&o.root, "root", defaultRoot(), "data directory holding the image store (env IMGTOOL_ROOT)")
	f.StringVar(&o.progress, "progress", envOr("IMGTOOL_PROGRESS", envOr("BUILDKIT_PROGRESS", "auto")), "progress output: auto, plain, tty or quiet (env IMGTOOL_PROGRESS, or BUILDKIT_PROGRESS as docker build reads it)")
	f.StringVar(&o.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	f.BoolVar(&o.insecure, "insecure", false, "allow plain HTTP and unverified TLS registries (localhost and 127.0.0.1 use HTTP without it)")
	f.BoolVar(&o.tlsVer, "tls-verify", true, "verify registry TLS certificates (--tls-verify=false is --insecure, as in skopeo and podman)")

	cmd.AddCommand(
		newVersionCmd(),
		newImagesCmd(o), newTagCmd(o), newRmiCmd(o), newInspectCmd(o), newPruneCmd(o),
		newPullCmd(o), newPushCmd(o), newCopyCmd(o), newSaveCmd(o), newLoadCmd(o),
		newBuildCmd(o), newRunCmd(o), newLoginCmd(o), newLogoutCmd(o), newImportCmd(o), newUnpackCmd(o), newExportCmd(o),
		newRegistryCmd(o),
	)
	return cmd
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func (o *globalOptions) validate() error {
	switch o.progress {
	case "auto", "plain", "tty", "quiet":
	case "none":
		o.progress = "quiet" // buildx spelling
	default:
		return usageError{fmt.Errorf("--progress %q: want auto, plain, tty or quiet", o.progress)}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)}
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})))
	if !o.tlsVer {
		o.insecure = true
	}
	return nil
}

// openStore opens the local store under --root.
func (o *globalOptions) openStore(ctx context.Context) (*store.Store, error) {
	s, err := store.Open(ctx, filepath.Join(o.root, "store"))
	if err != nil {
		return nil, fmt.Errorf("%w (set --root or IMGTOOL_ROOT to a writable directory)", err)
	}
	return s, nil
}

// unpackCacheDir is where unpack.Cache keeps the layer chains of the
// images run or built.
func (o *globalOptions) unpackCacheDir() string {
	return filepath.Join(o.root, "cache", "unpack")
}

// withStore runs fn with the local store open.
func (o *globalOptions) withStore(cmd *cobra.Command, fn func(context.Context, *store.Store) error) error {
	s, err := o.openStore(cmd.Context())
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(cmd.Context(), s)
}

func (o *globalOptions) env(s *store.Store) transport.Env {
	return transport.Env{Store: s, Remote: transport.RemoteOptions{Insecure: o.insecure, UserAgent: "imgtool/" + version}}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of imgtool",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						v += "+" + s.Value[:min(12, len(s.Value))]
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "imgtool %s (%s)\n", v, strings.TrimPrefix(bi.GoVersion, "go"))
				return
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imgtool %s\n", v)
		},
	}
}

// exactArgs is cobra.ExactArgs reported as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
		}
		return nil
	}
}

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.RangeArgs(lo, hi)(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
		}
		return nil
	}
}
