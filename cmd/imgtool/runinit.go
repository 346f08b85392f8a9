package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

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

// noticeOnce returns where the runner's notice (such as the single-id
// mapping) goes: standard error the first time on this data root, then
// nowhere, so that CI logs do not repeat it for every run and RUN step.
func (o *globalOptions) noticeOnce() io.Writer {
	return &onceWriter{marker: filepath.Join(o.root, ".runner-notice-shown"), w: os.Stderr}
}

type onceWriter struct {
	once   sync.Once
	marker string
	w      io.Writer
}

func (o *onceWriter) Write(p []byte) (int, error) {
	o.once.Do(func() {
		f, err := os.OpenFile(o.marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil && errors.Is(err, os.ErrExist) {
			return
		}
		if f != nil {
			f.Close()
		}
		_, _ = o.w.Write(p)
	})
	return len(p), nil
}
