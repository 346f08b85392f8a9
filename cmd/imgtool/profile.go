package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// startProfile writes a CPU profile of this process to the file
// IMGTOOL_CPUPROFILE names, and a heap profile (of the allocations made)
// to IMGTOOL_MEMPROFILE when it ends, for `go tool pprof`: what the
// bench scripts measure is then explained from the real binary. The
// returned function stops them.
func startProfile() func() {
	stop := func() {}
	if p := os.Getenv("IMGTOOL_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "imgtool: IMGTOOL_CPUPROFILE: %v\n", err)
		} else if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "imgtool: IMGTOOL_CPUPROFILE: %v\n", err)
			f.Close()
		} else {
			stop = func() { pprof.StopCPUProfile(); f.Close() }
		}
	}
	p := os.Getenv("IMGTOOL_MEMPROFILE")
	if p == "" {
		return stop
	}
	return func() {
		stop()
		f, err := os.Create(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "imgtool: IMGTOOL_MEMPROFILE: %v\n", err)
			return
		}
		defer f.Close()
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fmt.Fprintf(os.Stderr, "imgtool: IMGTOOL_MEMPROFILE: %v\n", err)
		}
	}
}
