// Command alternate times several commands side by side for the bench
// scripts: each round runs every command once, in turn, so that a
// machine that slows down or speeds up affects all columns alike. It
// prints each column's median and its ratio to the first column.
//
// Usage: alternate -n ROUNDS NAME=COMMAND... (COMMAND is split on spaces;
// no shell is involved, so no shell start-up is timed).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

type column struct {
	name  string
	argv  []string
	times []time.Duration
}

func main() {
	rounds := flag.Int("n", 20, "rounds")
	warmup := flag.Int("warmup", 2, "untimed rounds first")
	vs := flag.String("vs", "", "column the ratios are relative to (default: the first)")
	flag.Parse()
	var cols []*column
	for _, a := range flag.Args() {
		name, cmd, ok := strings.Cut(a, "=")
		if !ok || strings.TrimSpace(cmd) == "" {
			fmt.Fprintf(os.Stderr, "alternate: %q: want NAME=COMMAND\n", a)
			os.Exit(2)
		}
		cols = append(cols, &column{name: name, argv: strings.Fields(cmd)})
	}
	if len(cols) == 0 || *rounds < 1 {
		fmt.Fprintln(os.Stderr, "usage: alternate -n ROUNDS NAME=COMMAND...")
		os.Exit(2)
	}
	for r := 0; r < *warmup+*rounds; r++ {
		for _, c := range cols {
			d, err := once(c.argv)
			if err != nil {
				fmt.Fprintf(os.Stderr, "alternate: %s: %v\n", c.name, err)
				os.Exit(1)
			}
			if r >= *warmup {
				c.times = append(c.times, d)
			}
		}
	}
	baseCol := cols[0]
	for _, c := range cols {
		if c.name == *vs {
			baseCol = c
		}
	}
	base := median(baseCol.times)
	fmt.Printf("%d rounds; ratio = column median / %s median\n", *rounds, baseCol.name)
	fmt.Printf("%-12s %12s %12s %12s %8s\n", "column", "median", "min", "max", "ratio")
	for _, c := range cols {
		m := median(c.times)
		fmt.Printf("%-12s %12s %12s %12s %7.2fx\n", c.name, m.Round(10*time.Microsecond),
			slices.Min(c.times).Round(10*time.Microsecond), slices.Max(c.times).Round(10*time.Microsecond), float64(m)/float64(base))
	}
}

func once(argv []string) (time.Duration, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = nil, os.Stderr
	start := time.Now()
	err := cmd.Run()
	return time.Since(start), err
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
