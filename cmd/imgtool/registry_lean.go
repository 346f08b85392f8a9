//go:build imgtool_lean

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/imgtool/imgtool/internal/embedexe"
	"github.com/spf13/cobra"
)

// registryExe is the full imgtool, which alone links the registry
// (distribution's storage drivers, the AWS SDK, prometheus): the lean
// imgtool that scripts/build.sh builds carries it compressed and becomes
// it for `imgtool registry …`, so that no other command pays for
// initialising those packages. A `go build -tags imgtool_lean` without
// scripts/build.sh carries none.
var registryExe = embedexe.Exe{Name: "imgtool-registry"}

// newRegistryCmd stands for the registry commands of the full imgtool:
// it hands the whole command line, help and completion included, to the
// full imgtool, which parses it, prints and exits as it always did.
func newRegistryCmd(o *globalOptions) *cobra.Command {
	execFull := func(ctx context.Context) error {
		dirs := []string{filepath.Join(rootFromArgs(os.Args[1:], o.root), "cache", "registry-exe")}
		if cache, err := os.UserCacheDir(); err == nil {
			dirs = append(dirs, filepath.Join(cache, "imgtool", "registry-exe"))
		}
		// A SIGTERM or SIGINT from here on kills this process as it would
		// the full imgtool before it starts listening; one that came
		// before was caught by main and is not lost.
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		if ctx != nil && ctx.Err() != nil {
			return fmt.Errorf("registry: %w", ctx.Err())
		}
		// A CPU profile's interval timer outlives exec and its SIGPROF
		// would kill the full imgtool before it installs a handler; that
		// imgtool profiles itself to IMGTOOL_CPUPROFILE instead.
		pprof.StopCPUProfile()
		err := registryExe.Exec(dirs, os.Args, os.Environ())
		if !registryExe.Valid() {
			err = fmt.Errorf("%w: build imgtool with scripts/build.sh (make build), or without -tags imgtool_lean", err)
		}
		return fmt.Errorf("registry: %w", err)
	}
	cmd := &cobra.Command{
		Use:                "registry",
		Short:              "Run an OCI distribution registry",
		DisableFlagParsing: true,
		RunE:               func(c *cobra.Command, _ []string) error { return execFull(c.Context()) },
		ValidArgsFunction: func(c *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
			execFull(c.Context())
			return nil, cobra.ShellCompDirectiveError
		},
	}
	cmd.SetHelpFunc(func(c *cobra.Command, _ []string) {
		fmt.Fprintf(c.ErrOrStderr(), "imgtool: %v\n", execFull(c.Context()))
		os.Exit(1)
	})
	return cmd
}

// rootFromArgs is the data root a command line names with --root, which
// cobra leaves unparsed for a command that parses its own flags, or def.
// Like pflag, the last one counts, and "--" ends the flags.
func rootFromArgs(args []string, def string) string {
	root := def
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return root
		case a == "--root" && i+1 < len(args):
			root = args[i+1]
			i++
		case strings.HasPrefix(a, "--root="):
			root = strings.TrimPrefix(a, "--root=")
		}
	}
	return root
}
