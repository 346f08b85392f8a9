// Command mktree writes a generated directory tree for layer benchmarks:
// -files files totalling about -bytes, spread over nested directories,
// with content that compresses about as well as a typical rootfs (half
// seeded random bytes, half repetitive text).
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	dir := flag.String("dir", "", "directory to create")
	files := flag.Int("files", 20000, "number of files")
	total := flag.Int64("bytes", 200<<20, "total bytes of file content")
	seed := flag.Uint64("seed", 1, "seed of the content")
	flag.Parse()
	if *dir == "" || *files <= 0 {
		fmt.Fprintln(os.Stderr, "usage: mktree -dir DIR [-files N] [-bytes N] [-seed N]")
		os.Exit(2)
	}
	if err := run(*dir, *files, *total, *seed); err != nil {
		fmt.Fprintf(os.Stderr, "mktree: %v\n", err)
		os.Exit(1)
	}
}

func run(dir string, files int, total int64, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, seed))
	text := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog 0123456789\n", 64))
	avg := total / int64(files)
	for i := range files {
		// 20 top directories, 10 below each: about 100 files a directory.
		d := filepath.Join(dir, fmt.Sprintf("d%02d", i%20), fmt.Sprintf("s%d", (i/20)%10))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		size := avg/2 + rng.Int64N(avg+1)
		buf := make([]byte, size)
		half := size / 2
		for j := int64(0); j < half; j++ {
			buf[j] = byte(rng.Uint32())
		}
		for j := half; j < size; j += int64(len(text)) {
			copy(buf[j:], text)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), buf, 0o644); err != nil {
			return err
		}
	}
	return nil
}
