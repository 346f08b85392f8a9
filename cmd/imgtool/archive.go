package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/imgtool/imgtool/store/transport"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

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
