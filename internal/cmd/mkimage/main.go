// Command mkimage writes a test image into an OCI layout (an imgtool
// store) for the demo and the benchmarks: layers of seeded random data,
// optionally after a layer made from a directory. It is a thin CLI over
// internal/testimage; `imgtool import` (issue 3) is the user command.
//
//	mkimage -dir DIR -ref REF [-layers N] [-layer-size BYTES] [-seed N]
//	        [-compression gzip|none] [-platform OS/ARCH] [-from DIR]
//
// It prints the manifest digest.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/imgtool/imgtool/internal/testimage"
	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
)

func main() {
	var o testimage.Options
	dir := flag.String("dir", "", "OCI layout to write into (created when missing)")
	ref := flag.String("ref", "", "name to give the image in the layout's index.json")
	platform := flag.String("platform", "", "os/arch[/variant] of the image (default: this machine's)")
	flag.IntVar(&o.Layers, "layers", 0, "layers of random data (default 1, or 0 with -from)")
	flag.Int64Var(&o.LayerSize, "layer-size", testimage.DefaultLayerSize, "bytes of random data per layer")
	flag.Int64Var(&o.Seed, "seed", 1, "seed of the random data")
	flag.StringVar(&o.Compression, "compression", testimage.Gzip, "layer compression: gzip or none")
	flag.StringVar(&o.Dir, "from", "", "directory to make the image's first layer from")
	flag.Parse()
	if *dir == "" || *ref == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimage -dir DIR -ref REF [-layers N] [-layer-size BYTES] [-seed N] [-compression gzip|none] [-platform OS/ARCH] [-from DIR]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *dir, *ref, *platform, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir, ref, platform string, o testimage.Options) error {
	if platform != "" {
		p, err := manifest.ParsePlatform(platform)
		if err != nil {
			return err
		}
		o.Platform = p
	}
	s, err := store.Open(ctx, dir)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := testimage.Write(ctx, s, o)
	if err != nil {
		return err
	}
	// SetName, not Set: the name stays as given ("localhost/bench:1",
	// or a bare "demo" as OCI layouts conventionally use), since skopeo
	// and the demo address the image by exactly this name.
	if err := s.SetName(ctx, ref, d); err != nil {
		return fmt.Errorf("name image %s: %w", ref, err)
	}
	fmt.Println(d.Digest)
	return nil
}
