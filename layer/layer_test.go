package layer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"github.com/imgtool/imgtool/manifest"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/internal/rootlesscontainers"
	"github.com/imgtool/imgtool/layer"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// makeTree builds a tree with every kind of entry a layer holds. order
// reverses the creation order, so that two trees differ in inode order
// and mtimes but not in content.
func makeTree(t *testing.T, reverse bool) string {
	t.Helper()
	root := t.TempDir()
	steps := []func(){
		func() { os.MkdirAll(filepath.Join(root, "etc"), 0o755) },
		func() {
			os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
		},
		func() { os.MkdirAll(filepath.Join(root, "bin"), 0o755) },
		func() {
			os.WriteFile(filepath.Join(root, "bin", "tool"), bytes.Repeat([]byte("x"), 100000), 0o755)
			unix.Chmod(filepath.Join(root, "bin", "tool"), 0o4755) // os.FileMode spells setuid differently
		},
		func() { os.Mkdir(filepath.Join(root, "tmp"), 0o755); unix.Chmod(filepath.Join(root, "tmp"), 0o1777) },
		func() { os.Symlink("../etc/passwd", filepath.Join(root, "bin", "link")) },
		func() { unix.Mkfifo(filepath.Join(root, "fifo"), 0o600) },
	}
	if reverse {
		// Parents must exist first; reversing within the constraint still
		// changes inode numbers and times.
		steps = []func(){steps[2], steps[0], steps[4], steps[6], steps[3], steps[5], steps[1]}
	}
	for _, s := range steps {
		s()
		time.Sleep(2 * time.Millisecond)
	}
	os.Link(filepath.Join(root, "bin", "tool"), filepath.Join(root, "bin", "tool2"))
	unix.Lsetxattr(filepath.Join(root, "etc", "passwd"), "user.imgtool", []byte("kept"), 0)
	unix.Lsetxattr(filepath.Join(root, "bin", "tool"), rootlesscontainers.Xattr, rootlesscontainers.Encode(rootlesscontainers.Resource{UID: 1000, GID: 1001}), 0)
	return root
}

type entry struct {
	name, link string
	typ        byte
	mode       int64
	uid, gid   int
	size       int64
	mtime      time.Time
	pax        map[string]string
	devmajor   int64
	devminor   int64
}

// readLayer decompresses a blob, checks its digest and diffID, and lists it.
func readLayer(t *testing.T, blob []byte, d manifest.LayerDesc) []entry {
	t.Helper()
	if got := digest.FromBytes(blob); got != d.Digest || int64(len(blob)) != d.Size {
		t.Fatalf("blob hashes to %s (%d bytes), descriptor says %s (%d)", got, len(blob), d.Digest, d.Size)
	}
	var r io.Reader = bytes.NewReader(blob)
	switch {
	case strings.HasSuffix(d.MediaType, "+zstd"):
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(d.MediaType, "+gzip"):
		gr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = gr
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(raw); got != d.DiffID {
		t.Fatalf("tar hashes to %s, diffID is %s", got, d.DiffID)
	}
	var out []entry
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{h.Name, h.Linkname, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Size, h.ModTime, h.PAXRecords, h.Devmajor, h.Devminor})
	}
}

func write(t *testing.T, root string, ch layer.Changes, o layer.Options) ([]byte, manifest.LayerDesc) {
	t.Helper()
	var buf bytes.Buffer
	d, err := layer.Write(context.Background(), &buf, root, ch, o)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), d
}

func TestWriteTree(t *testing.T) {
	root := makeTree(t, false)
	for _, c := range []layer.Compression{layer.Zstd, layer.Gzip, layer.None} {
		t.Run(string(c), func(t *testing.T) {
			ch, err := layer.Dir(root)
			if err != nil {
				t.Fatal(err)
			}
			blob, d := write(t, root, ch, layer.Options{Compression: c})
			if d.MediaType != c.MediaType() {
				t.Errorf("media type %s, want %s", d.MediaType, c.MediaType())
			}
			got := map[string]entry{}
			var names []string
			for _, e := range readLayer(t, blob, d) {
				got[e.name] = e
				names = append(names, e.name)
			}
			want := "bin/ bin/link bin/tool bin/tool2 etc/ etc/passwd fifo tmp/"
			if strings.Join(names, " ") != want {
				t.Errorf("entries %q, want %q", strings.Join(names, " "), want)
			}
			if e := got["bin/tool"]; e.typ != tar.TypeReg || e.mode != 0o4755 || e.size != 100000 || e.uid != 1000 || e.gid != 1001 {
				t.Errorf("bin/tool: %+v (want setuid 0755, 100000 bytes, owner from the rootless xattr 1000:1001)", e)
			}
			if _, leaked := got["bin/tool"].pax["SCHILY.xattr."+rootlesscontainers.Xattr]; leaked {
				t.Error("the rootlesscontainers xattr was copied into the layer")
			}
			if e := got["bin/tool2"]; e.typ != tar.TypeLink || e.link != "bin/tool" || e.size != 0 {
				t.Errorf("hard link stored as %+v, want a link to bin/tool", e)
			}
			if e := got["bin/link"]; e.typ != tar.TypeSymlink || e.link != "../etc/passwd" {
				t.Errorf("symlink: %+v", e)
			}
			if e := got["tmp/"]; e.typ != tar.TypeDir || e.mode != 0o1777 {
				t.Errorf("sticky dir: %+v", e)
			}
			if e := got["fifo"]; e.typ != tar.TypeFifo {
				t.Errorf("fifo: %+v", e)
			}
			if got["etc/passwd"].pax["SCHILY.xattr.user.imgtool"] != "kept" {
				t.Errorf("xattr lost: %+v", got["etc/passwd"].pax)
			}
		})
	}
}

func TestWhiteouts(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "d"), 0o755)
	ch := layer.List([]layer.Change{{Path: "a/b", Kind: layer.Delete}, {Path: "d", Kind: layer.Replace}, {Path: "top", Kind: layer.Delete}})
	blob, d := write(t, root, ch, layer.Options{Compression: layer.None})
	var names []string
	for _, e := range readLayer(t, blob, d) {
		names = append(names, e.name)
	}
	if want := "a/.wh.b d/ d/.wh..wh..opq .wh.top"; strings.Join(names, " ") != want {
		t.Errorf("entries %q, want %q", strings.Join(names, " "), want)
	}
}

// TestReproducible: two copies of a tree made in a different order at
// different times give the same layer when SOURCE_DATE_EPOCH is set.
func TestReproducible(t *testing.T) {
	epoch := time.Unix(1700000000, 0)
	a, b := makeTree(t, false), makeTree(t, true)
	os.Chtimes(filepath.Join(b, "etc", "passwd"), time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	var digests []manifest.LayerDesc
	for _, root := range []string{a, b} {
		ch, err := layer.Dir(root)
		if err != nil {
			t.Fatal(err)
		}
		_, d := write(t, root, ch, layer.Options{SourceDateEpoch: &epoch})
		digests = append(digests, d)
	}
	if digests[0].Digest != digests[1].Digest || digests[0].DiffID != digests[1].DiffID {
		t.Fatalf("same tree, different layers: %+v vs %+v", digests[0], digests[1])
	}
	blob, d := write(t, a, mustDir(t, a), layer.Options{SourceDateEpoch: &epoch})
	for _, e := range readLayer(t, blob, d) {
		if e.mtime.After(epoch) {
			t.Errorf("%s: mtime %v after the epoch", e.name, e.mtime)
		}
	}
}

func mustDir(t *testing.T, root string) layer.Changes {
	ch, err := layer.Dir(root)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestStandardTools: GNU tar lists the layer, zstd and gzip decode it.
func TestStandardTools(t *testing.T) {
	root := makeTree(t, false)
	dir := t.TempDir()
	for c, decode := range map[layer.Compression][]string{layer.Zstd: {"zstd", "-dc"}, layer.Gzip: {"gzip", "-dc"}, layer.None: {"cat"}} {
		blob, _ := write(t, root, mustDir(t, root), layer.Options{Compression: c})
		p := filepath.Join(dir, string(c))
		os.WriteFile(p, blob, 0o644)
		cmd := exec.Command("sh", "-c", strings.Join(decode, " ")+" < "+p+" | tar -tvf - --numeric-owner")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", c, err, out)
		}
		for _, want := range []string{"-rwsr-xr-x 1000/1001", "bin/tool", "bin/tool2 link to bin/tool", "bin/link -> ../etc/passwd", "drwxrwxrwt", "prw-------"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s: GNU tar listing lacks %q:\n%s", c, want, out)
			}
		}
	}
}

// TestFromTar: re-encoding a layer's own tar, compressed any way, gives the
// same tar (diffID), so imports of the same rootfs are reproducible.
func TestFromTar(t *testing.T) {
	epoch := time.Unix(1700000000, 0)
	root := makeTree(t, false)
	for _, in := range []layer.Compression{layer.None, layer.Gzip, layer.Zstd} {
		blob, d := write(t, root, mustDir(t, root), layer.Options{Compression: in, SourceDateEpoch: &epoch})
		var out bytes.Buffer
		got, err := layer.FromTar(context.Background(), &out, bytes.NewReader(blob), layer.Options{SourceDateEpoch: &epoch})
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got.DiffID != d.DiffID {
			t.Errorf("%s input: re-encoded tar %s, original %s", in, got.DiffID, d.DiffID)
		}
		readLayer(t, out.Bytes(), got)
	}
	if _, err := layer.FromTar(context.Background(), io.Discard, strings.NewReader("this is not a tar archive, not at all, not even close, definitely not"), layer.Options{}); err == nil {
		t.Error("FromTar accepted garbage")
	}
}

// TestDeviceNodes: character and block devices keep their numbers. Making
// them needs CAP_MKNOD, which CI (root) has.
func TestDeviceNodes(t *testing.T) {
	root := t.TempDir()
	if err := unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod needs CAP_MKNOD (run as root, as CI does): %v", err)
	}
	if err := unix.Mknod(filepath.Join(root, "loop9"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 9))); err != nil {
		t.Fatal(err)
	}
	unix.Chmod(filepath.Join(root, "null"), 0o666) // past the umask
	unix.Chmod(filepath.Join(root, "loop9"), 0o660)
	blob, d := write(t, root, mustDir(t, root), layer.Options{Compression: layer.None})
	got := map[string]entry{}
	for _, e := range readLayer(t, blob, d) {
		got[e.name] = e
	}
	if e := got["null"]; e.typ != tar.TypeChar || e.mode != 0o666 || e.devmajor != 1 || e.devminor != 3 {
		t.Errorf("char device: %+v", e)
	}
	if e := got["loop9"]; e.typ != tar.TypeBlock || e.mode != 0o660 || e.devmajor != 7 || e.devminor != 9 {
		t.Errorf("block device: %+v", e)
	}
}
