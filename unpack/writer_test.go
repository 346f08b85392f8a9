package unpack_test

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/unpack"
	"golang.org/x/sys/unix"
)

// TestWriteFails: a file that cannot be written (here: past RLIMIT_FSIZE,
// so EFBIG) fails the layer with its name, whether a writer goroutine
// (a small file) or the applier itself (a file past a batch) wrote it,
// and every descriptor the layer opened is closed. The limit is the
// process's, so the cases run in a helper process.
func TestWriteFails(t *testing.T) {
	const helperEnv = "IMGTOOL_UNPACK_FSIZE_HELPER"
	if os.Getenv(helperEnv) == "" {
		cmd := newHelper(t, "^TestWriteFails$", helperEnv+"=1")
		if err := cmd.Run(); err != nil {
			t.Fatalf("the helper with RLIMIT_FSIZE failed: %v", err)
		}
		return
	}
	const limit = 256 << 10
	must(t, unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: unix.RLIM_INFINITY}))
	for _, c := range []struct {
		name string
		size int
	}{
		{"in a batch", limit + 1},
		{"past a batch", 2 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			defer e.checkCanary(t)
			b := newTar(t)
			for _, n := range []string{"a", "b", "c"} {
				b.file("before/"+n, n)
			}
			b.file("big", strings.Repeat("x", c.size))
			for _, n := range []string{"a", "b", "c"} {
				b.file("after/"+n, n)
			}
			fds := openFds(t)
			_, err := apply(e.root, mkLayer(t, "zstd", b.bytes()), unpack.Options{})
			if !errors.Is(err, unix.EFBIG) || !strings.Contains(err.Error(), "big") {
				t.Errorf("Apply: %v, want EFBIG naming big", err)
			}
			if got := openFds(t); got != fds {
				t.Errorf("%d descriptors open after Apply, %d before", got, fds)
			}
		})
	}
}

// TestWarningsInTarOrder: warnings come out in the order of their entries,
// though the applier warns about some (device nodes, symlink owners) and
// the writer goroutines about others (xattrs of regular files).
func TestWarningsInTarOrder(t *testing.T) {
	e := newEnv(t)
	defer e.checkCanary(t)
	b := newTar(t)
	var want []string
	bogus := map[string]string{"SCHILY.xattr.bogus.ns": "x"} // no such namespace: never settable
	for i := range 40 {
		n := fmt.Sprintf("f%02d", i)
		b.add(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, PAXRecords: bogus}, []byte(n))
		want = append(want, "/"+n)
		if i%7 == 0 {
			b.add(&tar.Header{Name: n + ".s", Typeflag: tar.TypeSymlink, Linkname: n, Uid: 1000}, nil)
			b.dev(n+".dev", tar.TypeChar, 1, 3)
			want = append(want, "/"+n+".s", "/"+n+".dev")
		}
	}
	r, err := apply(e.root, mkLayer(t, "none", b.bytes()), unpack.Options{Rootless: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range r.Warnings {
		got = append(got, w.Path)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("warnings about\n%v\nwant\n%v", got, want)
	}
}

func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return len(ents)
}
