package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// runnerInit is the container init program (internal/cmd/runner-init)
// that scripts/build.sh embeds, with the sha256 of its bytes. A plain
// `go build` leaves it empty and the runner re-executes imgtool itself,
// which works the same but starts several times slower.
var runnerInit struct {
	exe    []byte
	digest string
}

// initExe returns the embedded init's path under the data root, writing
// it there on first use, or "" (the runner then re-executes imgtool)
// when there is none or it cannot be written. The file is named by its
// digest, so an imgtool of another build never runs this one's init.
func (o *globalOptions) initExe() string {
	if len(runnerInit.exe) == 0 || runnerInit.digest == "" {
		return ""
	}
	dir := filepath.Join(o.root, "cache", "runner-init")
	p := filepath.Join(dir, runnerInit.digest)
	// Written by rename after a sync, so a file of the right size is whole.
	if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() && st.Size() == int64(len(runnerInit.exe)) {
		return p
	}
	if err := writeInit(dir, p, runnerInit.exe); err != nil {
		fmt.Fprintf(os.Stderr, "imgtool: warning: %v; starting imgtool itself as the container init\n", err)
		return ""
	}
	return p
}

// writeInit publishes exe at p atomically and removes the inits of other
// builds beside it.
func writeInit(dir, p string, exe []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write the container init: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("write the container init: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(exe)
	if err == nil {
		err = f.Chmod(0o700)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("write the container init %s: %w", p, err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "[0-9a-f]*"))
	for _, o := range old {
		if o != p {
			os.Remove(o)
		}
	}
	return nil
}
