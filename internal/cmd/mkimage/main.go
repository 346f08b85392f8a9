// Command mkimage writes a test image into an OCI layout (an imgtool
// store) for the demo and the benchmarks: a directory as one layer, or
// layers of seeded random data. `imgtool import` (issue 3) is the user
// command for this; mkimage is test tooling.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/imgtool/imgtool/internal/imagegen"
	"github.com/imgtool/imgtool/store"
)

func main() {
	var o imagegen.Options
	dir := flag.String("dir", "", "OCI layout to write into (created when missing)")
	ref := flag.String("ref", "", "name to give the image")
	flag.StringVar(&o.Dir, "from", "", "directory to make the image's only layer from")
	flag.IntVar(&o.Layers, "layers", 0, "layers of random data")
	flag.Int64Var(&o.LayerSize, "layer-size", 1<<20, "bytes of random data per layer")
	flag.Uint64Var(&o.Seed, "seed", 1, "seed of the random data")
	flag.Parse()
	if *dir == "" || *ref == "" || (o.Dir == "" && o.Layers == 0) {
		fmt.Fprintln(os.Stderr, "usage: mkimage -dir LAYOUT -ref REF (-from DIR | -layers N [-layer-size BYTES] [-seed N])")
		os.Exit(2)
	}
	if err := run(context.Background(), *dir, *ref, o); err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir, ref string, o imagegen.Options) error {
	s, err := store.Open(ctx, dir)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := imagegen.Write(ctx, s, o)
	if err != nil {
		return err
	}
	if err := s.SetName(ctx, ref, d); err != nil {
		return err
	}
	fmt.Println(d.Digest)
	return nil
}
