package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/imgtool/imgtool/internal/embedexe"
)

// runnerInit is the container init program (internal/cmd/runner-init)
// that scripts/build.sh embeds. A plain `go build` leaves it empty and
// the runner re-executes imgtool itself, which works the same but starts
// several times slower.
var runnerInit = embedexe.Exe{Name: "imgtool-runner-init"}

// initExe returns the embedded init's path under the data root, writing
// it there on first use, or "" (the runner then re-executes imgtool)
// when there is none or it cannot be written. The file is named by its
// digest, so an imgtool of another build never runs this one's init.
func (o *globalOptions) initExe() string {
	if !runnerInit.Valid() {
		return ""
	}
	p, err := runnerInit.Publish(filepath.Join(o.root, "cache", "runner-init"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "imgtool: warning: %v; starting imgtool itself as the container init\n", err)
		return ""
	}
	return p
}
