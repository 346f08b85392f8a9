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

// fullExe is the full imgtool, built without imgtool_lean: the lean
// imgtool that scripts/build.sh builds carries it compressed and becomes
// it for the commands whose packages are costly to initialise, so that
// the others (run first of all) do not pay for them at every start: the
// registry (distribution's storage drivers, the AWS SDK, prometheus, otel,
// grpc), and build, prune and import, which need the build package and
// BuildKit's Dockerfile parser (protobuf, gob). Those are long-running or
// rare, and an exec is a few milliseconds. A `go build -tags imgtool_lean`
// without scripts/build.sh carries none. The files of those commands
// are built with `//go:build !imgtool_lean`; TestLeanStartup fails when
// the lean imgtool initialises their packages after all.
var fullExe = embedexe.Exe{Name: "imgtool-full"}

func newRegistryCmd(o *globalOptions) *cobra.Command {
	return fullCommand(o, "registry", "Run an OCI distribution registry")
}

func newBuildCmd(o *globalOptions) *cobra.Command {
	return fullCommand(o, "build", "Build an image from a Dockerfile, without a daemon and without root")
}

func newPruneCmd(o *globalOptions) *cobra.Command {
	return fullCommand(o, "prune", "Delete blobs and unpacked layers that no image in the local store references")
}

func newImportCmd(o *globalOptions) *cobra.Command {
	return fullCommand(o, "import", "Make a one-layer image from a directory or a tarball, like docker import")
}

// fullCommand stands for a command of the full imgtool: it hands the
// whole command line, help and completion included, to the full imgtool,
// which parses it, prints and exits as it always did.
func fullCommand(o *globalOptions, use, short string) *cobra.Command {
	execFull := func(ctx context.Context) error {
		dirs := []string{filepath.Join(rootFromArgs(os.Args[1:], o.root), "cache", "imgtool-full")}
		if cache, err := os.UserCacheDir(); err == nil {
			dirs = append(dirs, filepath.Join(cache, "imgtool", "imgtool-full"))
		}
		// A SIGTERM or SIGINT from here on kills this process as it would
		// the full imgtool before it sets its handlers; one that came
		// before was caught by main and is not lost.
		interruptsCaught(ctx)
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		if ctx != nil && ctx.Err() != nil {
			return fmt.Errorf("%s: %w", use, ctx.Err())
		}
		// A CPU profile's interval timer outlives exec and its SIGPROF
		// would kill the full imgtool before it installs a handler; that
		// imgtool profiles itself to IMGTOOL_CPUPROFILE instead.
		pprof.StopCPUProfile()
		err := fullExe.Exec(dirs, os.Args, os.Environ())
		if !fullExe.Valid() {
			err = fmt.Errorf("%w: build imgtool with scripts/build.sh (make build), or without -tags imgtool_lean", err)
		}
		return fmt.Errorf("%s: %w", use, err)
	}
	cmd := &cobra.Command{
		Use:                use,
		Short:              short,
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

// interruptsCaught returns once interruptContext's handlers are set, so
// that a signal.Reset of them is not undone by their setting afterwards.
func interruptsCaught(ctx context.Context) {
	if ctx == nil {
		return
	}
	if set, ok := ctx.Value(interruptsKey{}).(<-chan struct{}); ok {
		<-set
	}
}
