package layer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/internal/compression"
	"github.com/imgtool/imgtool/internal/testnobody"
	"github.com/imgtool/imgtool/layer"
)

// lowerScript makes the tree the steps below change ($1 is its root).
const lowerScript = `
mkdir -p keep/deep/er del/sub opaque/sub d2f/inner mod same rename/in
echo a > keep/a; echo deep > keep/deep/er/file; echo x > del/x; echo y > del/sub/y
echo o > opaque/o; echo s > opaque/sub/s; echo f > f2d; echo i > d2f/inner/i
echo m > mod/file; echo s > same/file; echo r > rename/in/r; echo g > gone
ln -s keep/a link; echo h > hard
`

// steps are RUN steps, each checked on its own and in turn over the
// upper layer of the ones before (a stack of lower layers).
// upper layer of the ones before (a stack of lower layers); the layer
// must hold the entries named in has (and nothing of the ones in not).
var steps = []struct {
	name, script string
	has, not     []string
}{
	{"deletions", `rm del/x; rm -r del/sub; rm gone`, []string{"del/.wh.x ", "del/.wh.sub ", ".wh.gone "}, nil},
	{"opaque directory replacement", `rm -r opaque; mkdir opaque; echo new > opaque/n`, []string{"opaque/ ", "opaque/.wh..wh..opq ", "opaque/n "}, nil},
	{"file replaced by a directory", `rm f2d; mkdir f2d; echo c > f2d/c`, []string{"f2d/ 5", "f2d/c "}, []string{"f2d/.wh..wh..opq"}},
	{"directory replaced by a file", `rm -r d2f; echo now-a-file > d2f`, []string{"d2f 0"}, []string{"d2f/"}},
	{"modification deep down", `echo changed > keep/deep/er/file`, []string{"keep/deep/er/file "}, []string{"keep/ ", "keep/deep/ "}},
	{"unchanged copy-ups", `chmod 644 same/file; touch -r same/file same/file; cat mod/file >> /dev/null`, nil, []string{"same/file "}},
	{"metadata", `chmod 600 mod/file; ln -sfn other link`, []string{"mod/file 0 600", "link 2"}, nil},
	{"renamed directory", `mv rename renamed`, []string{".wh.rename ", "renamed/in/r "}, nil},
	{"new tree and hard link", `mkdir -p n/e/w; echo n > n/e/w/f; ln hard hard2`, []string{"n/e/w/f ", "hard2 "}, nil},
	{"changes over changes", `rm -r opaque/n f2d/c; echo again > del/x; mkdir -p del/sub && echo back > del/sub/z; rm keep/a`,
		[]string{"opaque/.wh.n ", "f2d/.wh.c ", "del/x ", "del/sub/z ", "keep/.wh.a "}, nil},
}

// TestUpperChanges: the layer read from an overlay's upper directory is
// the layer the snapshot diff gives for the same step, entry for entry,
// for deletions, opaque replacements, type changes, copy-ups that change
// nothing, and over a stack of lower layers that hold whiteouts and
// opaque directories themselves.
func TestUpperChanges(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("util-linux unshare is needed: %v", err)
	}
	base := t.TempDir()
	tree := filepath.Join(base, "tree") // the snapshot side, changed in place
	lower := filepath.Join(base, "lower")
	for _, d := range []string{tree, lower} {
		must(t, os.Mkdir(d, 0o755))
		sh(t, lowerScript, d)
	}
	stack := []string{lower} // the overlay side: uppers, uppermost first
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before, err := layer.Take(tree)
			must(t, err)
			prev := filepath.Join(base, fmt.Sprint("prev", i))
			must(t, exec.Command("cp", "-a", tree, prev).Run())
			// Held open, a removed directory keeps its inode, so that a new
			// one in its place cannot take it (ext4 may, and then Diff
			// rightly reports whiteouts of its old entries instead of an
			// opaque replacement, as TestDiff explains).
			held := holdDirs(t, tree)
			sh(t, st.script, tree)
			for _, f := range held {
				f.Close()
			}
			diff, err := layer.Diff(before, prev)
			must(t, err)
			want := layerEntries(t, tree, diff)

			upper, work, mnt := filepath.Join(base, fmt.Sprint("upper", i)), filepath.Join(base, fmt.Sprint("work", i)), filepath.Join(base, "mnt")
			for _, d := range []string{upper, work, mnt} {
				must(t, os.MkdirAll(d, 0o755))
			}
			// overlayfs leaves work/work with mode 0, which its owner
			// must open up to remove.
			t.Cleanup(func() { os.Chmod(filepath.Join(work, "work"), 0o700) })
			overlay(t, stack, upper, work, mnt, st.script)
			ch, err := layer.UpperChanges(upper, stack)
			must(t, err)
			got := layerEntries(t, upper, ch)
			if !slices.Equal(got, want) {
				t.Errorf("from the upper layer:\n  %s\nfrom the snapshot diff:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			all := strings.Join(got, "\n") + "\n"
			for _, h := range st.has {
				if !strings.Contains("\n"+all, "\n"+h) {
					t.Errorf("no entry %q in:\n%s", h, all)
				}
			}
			for _, n := range st.not {
				if strings.Contains("\n"+all, "\n"+n) {
					t.Errorf("entry %q in:\n%s", n, all)
				}
			}
			stack = append([]string{upper}, stack...)
		})
	}
}

// TestUpperChangesAsNobody runs TestUpperChanges as uid 65534 when the
// tests run as root: the overlay is then mounted in a user namespace the
// way a rootless build mounts it.
func TestUpperChangesAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Logf("running as uid %d: TestUpperChanges already takes the rootless path", os.Geteuid())
		return
	}
	out, err := testnobody.Run(t, nil, "-test.run", "^TestUpperChanges$", "-test.count=1", "-test.v")
	if err != nil || !strings.Contains(out, "--- PASS: TestUpperChanges") {
		t.Errorf("as uid %d (%v):\n%s", testnobody.UID, err, out)
	}
}

func holdDirs(t *testing.T, root string) []*os.File {
	var held []*os.File
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			held = append(held, f)
		}
		return err
	})
	must(t, err)
	return held
}

func sh(t *testing.T, script, dir string) {
	t.Helper()
	if out, err := exec.Command("sh", "-c", "set -e; cd \"$1\"; "+script, "sh", dir).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// overlay runs script in mnt, an overlay of lower under upper, mounted
// in a new user and mount namespace (the caller mapped to root) as a
// rootless build mounts it.
func overlay(t *testing.T, lower []string, upper, work, mnt, script string) {
	t.Helper()
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work + ",userxattr"
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
		`set -e; mount -t overlay overlay -o "$1" "$2"; cd "$2"; sh -c "set -e; $3"; cd /; umount "$2"`, "sh", opts, mnt, script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("overlay run of %q: %v\n%s", script, err, out)
	}
}

// layerEntries writes changes of root as a layer and lists its entries:
// name, type, mode, owner, link target, xattrs and a digest of the
// content (mtimes differ between two runs of a step).
func layerEntries(t *testing.T, root string, ch layer.Changes) []string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := layer.Write(context.Background(), &buf, root, ch, layer.Options{Compression: layer.None, Rootless: os.Geteuid() != 0}); err != nil {
		t.Fatal(err)
	}
	rc, _, err := compression.Decompress(&buf)
	must(t, err)
	tr := tar.NewReader(rc)
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		must(t, err)
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %c %o %d:%d %q %v %x", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, h.PAXRecords, sum.Sum(nil)[:4]))
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
