// Command zstdpack compresses a file with zstd for scripts/build.sh, which
// embeds the full imgtool into the lean one (see internal/embedexe); no
// zstd command line tool is needed to build imgtool.
//
//	zstdpack IN OUT
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: zstdpack IN OUT")
		os.Exit(2)
	}
	if err := pack(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "zstdpack: %v\n", err)
		os.Exit(1)
	}
}

func pack(in, out string) error {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		return err
	}
	zw, err := zstd.NewWriter(dst, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		dst.Close()
		return err
	}
	_, err = io.Copy(zw, src)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("compress %s to %s: %w", in, out, err)
	}
	return nil
}
