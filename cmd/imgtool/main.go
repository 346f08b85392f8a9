// Command imgtool builds OCI images from Dockerfiles without a daemon,
// serves them from a built-in registry, and runs them rootless. This
// package holds the commands, their flags, the progress display and exit
// codes; the work is done by the library packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/imgtool/imgtool/runner"
)

func main() {
	if runner.IsInit() {
		// The container init of `imgtool run` and of build steps.
		runner.Init()
	}
	ctx := interruptContext()
	endProfile := startProfile()
	code := run(ctx, os.Args[1:])
	endProfile()
	os.Exit(code)
}

// Exit codes: 1 for a failed operation, 2 for a command line that could
// not be understood, 130 when interrupted.
func run(ctx context.Context, args []string) int {
	cmd := newRootCmd()
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var status exitStatus
	if errors.As(err, &status) {
		return int(status)
	}
	fmt.Fprintf(os.Stderr, "imgtool: %v\n", err)
	var uerr usageError
	switch {
	case errors.As(err, &uerr):
		return 2
	case ctx.Err() != nil:
		return 130
	}
	return 1
}

// usageError marks errors in how a command was called.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }
