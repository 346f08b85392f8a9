// Package embedexe owns running an executable that imgtool carries inside
// itself, zstd-compressed: the lean imgtool that `make build` produces
// carries the full one, which alone links the registry (see
// scripts/build.sh). The executable is published once per build into a
// cache directory, atomically and after its digest was checked, and is
// then replaced by execve, so that the process keeps its PID, stdio,
// signals and exit status.
package embedexe

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Exe is an executable carried compressed.
type Exe struct {
	Name   string // what it is, for errors and the memfd name
	Zstd   []byte // the executable, zstd-compressed
	Digest string // hex sha256 of the uncompressed executable
	Size   int64  // size of the uncompressed executable
}

// Valid says whether e carries an executable at all (a plain `go build`
// carries none).
func (e Exe) Valid() bool {
	return len(e.Zstd) > 0 && e.Size > 0 && isDigestName(e.Digest)
}

// isDigestName reports whether s is a hex sha256, as the published files
// are named. (Not a regexp: compiling one is paid at every start of every
// imgtool process.)
func isDigestName(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Exec replaces the process with e run with argv and env. It publishes e
// in the first of dirs that takes it and runs it from there, or, when
// none does (a read-only root and home, noexec mounts), from an anonymous
// memory file. It returns only on failure.
func (e Exe) Exec(dirs []string, argv, env []string) error {
	if !e.Valid() {
		return fmt.Errorf("run %s: this imgtool carries no %s", e.Name, e.Name)
	}
	var errs []error
	for _, dir := range dirs {
		// Another build's imgtool may remove this build's file between
		// Publish and exec (it cleans up beside its own): publish again.
		// Other failures (a noexec mount) move on to the next place.
		for range 2 {
			p, err := e.Publish(dir)
			if err != nil {
				errs = append(errs, err)
				break
			}
			err = syscall.Exec(p, argv, env)
			errs = append(errs, fmt.Errorf("run %s %s: %w", e.Name, p, err))
			if !errors.Is(err, syscall.ENOENT) {
				break
			}
		}
	}
	p, f, err := e.memfd()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer f.Close()
	if err := syscall.Exec(p, argv, env); err != nil {
		return fmt.Errorf("run %s from memory: %w", e.Name, err)
	}
	return nil
}

// Publish returns the path of e in dir, named by its digest, writing it
// there first unless a file that can only be ours already is: written by
// rename after a sync, a file of the right size is whole.
func (e Exe) Publish(dir string) (string, error) {
	if !e.Valid() {
		return "", fmt.Errorf("publish %s: this imgtool carries no %s", e.Name, e.Name)
	}
	p := filepath.Join(dir, e.Digest)
	if st, err := os.Lstat(p); err == nil && e.trusted(st) {
		return p, nil
	}
	if err := e.write(dir, p); err != nil {
		return "", err
	}
	return p, nil
}

// trusted says whether st is a published copy of e nobody else can have
// changed: a regular file of e's size, owned by us or by root, mode 0755
// as written.
func (e Exe) trusted(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || !st.Mode().IsRegular() || st.Size() != e.Size || st.Mode().Perm() != 0o755 {
		return false
	}
	return sys.Uid == uint32(os.Geteuid()) || sys.Uid == 0
}

// write publishes e at p atomically and removes what other builds left
// beside it.
func (e Exe) write(dir, p string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", e.Name, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", e.Name, err)
	}
	defer os.Remove(f.Name())
	err = e.extract(f)
	if err == nil {
		err = f.Chmod(0o755)
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
		return fmt.Errorf("write %s to %s: %w", e.Name, p, err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "[0-9a-f]*"))
	for _, o := range old {
		if o != p && isDigestName(filepath.Base(o)) {
			os.Remove(o)
		}
	}
	return nil
}

// extract decompresses e into w, bounded by its size, and checks what
// came out against its digest.
func (e Exe) extract(w io.Writer) error {
	zr, err := zstd.NewReader(bytes.NewReader(e.Zstd), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	defer zr.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(zr, e.Size+1))
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != e.Size || got != e.Digest {
		return fmt.Errorf("decompressed %d bytes with sha256 %s, want %d bytes with sha256 %s", n, got, e.Size, e.Digest)
	}
	return nil
}

// memfd writes e into an anonymous memory file and returns the path that
// runs it. Close-on-exec is fine: the kernel opens the file before it
// closes the descriptors.
func (e Exe) memfd() (string, *os.File, error) {
	fd, err := unix.MemfdCreate(e.Name, unix.MFD_CLOEXEC)
	if err != nil {
		return "", nil, fmt.Errorf("write %s to memory: %w", e.Name, err)
	}
	f := os.NewFile(uintptr(fd), e.Name)
	if err := e.extract(f); err != nil {
		f.Close()
		return "", nil, fmt.Errorf("write %s to memory: %w", e.Name, err)
	}
	return "/proc/self/fd/" + strconv.Itoa(fd), f, nil
}
