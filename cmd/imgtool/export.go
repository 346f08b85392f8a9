package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imgtool/imgtool/internal/atomicfile"
	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	"github.com/imgtool/imgtool/unpack"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newExportCmd(o *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export REF -o rootfs.tar",
		Short: "Write an image's flattened filesystem as one tar, like crane export",
		Long: `Write the filesystem that image REF's layers add up to, whiteouts applied, as one
uncompressed tar (to standard output with -o - or when -o is omitted and the output
is not a terminal). REF is a store image or a transport source, as for unpack.`,
		Example: `  imgtool export busybox -o rootfs.tar
  imgtool export app:1 | tar -tv`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" || output == "-" {
				if term.IsTerminal(int(os.Stdout.Fd())) {
					return usageError{errors.New("export: refusing to write a tar to a terminal: use -o FILE")}
				}
				output = "-"
			}
			loc, err := transport.ParseLocation(args[0], transport.Store)
			if err != nil {
				return usageError{err}
			}
			return o.withStore(cmd, func(ctx context.Context, s *store.Store) error {
				return o.export(ctx, s, loc, output)
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "tar file to write (- for standard output)")
	return cmd
}

// export unpacks into a scratch directory under the data root and writes
// that tree as one tar: the unpacker's whiteout and ownership rules, then
// the layer writer's deterministic order. The file appears only complete.
func (o *globalOptions) export(ctx context.Context, s *store.Store, loc transport.Location, output string) error {
	im, err := o.resolveOrPull(ctx, s, loc)
	if err != nil {
		return err
	}
	m, err := store.ImageManifest(ctx, s, im.Descriptor)
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp(filepath.Join(o.root), "export-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.RemoveAll(scratch)
	tree := filepath.Join(scratch, "rootfs")
	rep, err := unpack.Image(ctx, s, m, tree, unpack.Options{})
	for _, w := range rep.Warnings {
		fmt.Fprintf(os.Stderr, "warning: %s: %s\n", w.Path, w.Reason)
	}
	if err != nil {
		return err
	}
	ch, err := layer.Dir(tree)
	if err != nil {
		return err
	}
	out, commit, abort, err := createOutput(output)
	if err != nil {
		return err
	}
	if _, err := layer.Write(ctx, out, tree, ch, layer.Options{Compression: layer.None, Rootless: os.Geteuid() != 0}); err != nil {
		abort()
		return fmt.Errorf("export %s: %w", loc, err)
	}
	return commit()
}

// createOutput opens a file that appears under its name only on commit
// (temp file + rename), with mode 0666 less the umask, or standard output
// for "-".
func createOutput(path string) (*os.File, func() error, func(), error) {
	if path == "-" {
		return os.Stdout, func() error { return nil }, func() {}, nil
	}
	f, err := atomicfile.Create(path, 0o666)
	if err != nil {
		return nil, nil, nil, err
	}
	return f.File, f.Commit, f.Abort, nil
}
