package unpack_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// memBlobs is a read-only store.Blobs in memory that counts how often
// each blob is opened: a layer applied once is opened once.
type memBlobs struct {
	mu    sync.Mutex
	blobs map[digest.Digest][]byte
	opens map[digest.Digest]int
	// block, when set, makes reads of that blob stop after its first
	// bytes forever (a process to be killed mid-layer).
	block digest.Digest
}

func newBlobs() *memBlobs {
	return &memBlobs{blobs: map[digest.Digest][]byte{}, opens: map[digest.Digest]int{}}
}

func (m *memBlobs) Open(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[d]
	if !ok {
		return nil, fmt.Errorf("open blob %s: %w", d, store.ErrNotFound)
	}
	m.opens[d]++
	if d == m.block {
		return io.NopCloser(io.MultiReader(bytes.NewReader(b[:len(b)/2]), blockForever{})), nil
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memBlobs) Stat(_ context.Context, d digest.Digest) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[d]
	if !ok {
		return 0, fmt.Errorf("stat blob %s: %w", d, store.ErrNotFound)
	}
	return int64(len(b)), nil
}

func (m *memBlobs) Writer(context.Context) (store.Writer, error) {
	return nil, errors.New("memBlobs is read-only")
}

func (m *memBlobs) openCount(d digest.Digest) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.opens[d]
}

type blockForever struct{}

func (blockForever) Read([]byte) (int, error) { select {} }

// layer adds a zstd layer made by f to m.
func (m *memBlobs) layer(t testing.TB, f func(b *tarB)) manifest.LayerDesc {
	t.Helper()
	b := newTar(t)
	f(b)
	l := mkLayer(t, "zstd", b.bytes())
	m.mu.Lock()
	m.blobs[l.Desc.Digest] = l.Blob
	m.mu.Unlock()
	return manifest.LayerDesc{Descriptor: l.Desc, DiffID: l.DiffID}
}

// treeState is what a chain's entry must keep while children are built
// from it: for every path, its type, mode, owner, size, content, link
// target, xattrs and mtime (not ctime or link counts, which hard-linking
// into a child changes by design).
func treeState(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		s := fmt.Sprintf("mode=%o uid=%d gid=%d size=%d mtime=%d.%09d rdev=%d xattrs=%s",
			st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Rdev, xattrs(p))
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" sha256=%x", sha256.Sum256(b))
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			s += " -> " + target
		}
		rel, _ := filepath.Rel(dir, p)
		m[rel] = s
		return nil
	})
	must(t, err)
	return m
}

// diffStates lists the paths whose state differs.
func diffStates(before, after map[string]string) string {
	var out []string
	for p, b := range before {
		if a, ok := after[p]; !ok {
			out = append(out, fmt.Sprintf("%s removed (was %s)", p, b))
		} else if a != b {
			out = append(out, fmt.Sprintf("%s:\n  before %s\n  after  %s", p, b, a))
		}
	}
	for p, a := range after {
		if _, ok := before[p]; !ok {
			out = append(out, fmt.Sprintf("%s added (%s)", p, a))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// cacheDir is a cache directory that makeRemovable can empty.
func cacheDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cache")
	t.Cleanup(func() { makeRemovable(dir) })
	return dir
}

// newHelper is this test binary run again with only tests matching run,
// and env added (the helper side of a test reads it).
func newHelper(t *testing.T, run string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", run, "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd
}
