package unpack_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/unpack"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// epoch is the default mtime of built entries.
var epoch = time.Unix(1_600_000_000, 0)

// tarB builds a layer tar entry by entry, hostile ones included:
// archive/tar writes whatever name it is given.
type tarB struct {
	t   testing.TB
	buf bytes.Buffer
	tw  *tar.Writer
}

func newTar(t testing.TB) *tarB {
	b := &tarB{t: t}
	b.tw = tar.NewWriter(&b.buf)
	return b
}

// add writes h and body. A zero Mode or ModTime takes a default.
func (b *tarB) add(h *tar.Header, body []byte) *tarB {
	b.t.Helper()
	if h.Mode == 0 {
		h.Mode = 0o644
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
	}
	if h.ModTime.IsZero() {
		h.ModTime = epoch
	}
	if h.Typeflag == tar.TypeReg {
		h.Size = int64(len(body))
	}
	if err := b.tw.WriteHeader(h); err != nil {
		b.t.Fatalf("tar header %q: %v", h.Name, err)
	}
	if _, err := b.tw.Write(body); err != nil {
		b.t.Fatalf("tar body %q: %v", h.Name, err)
	}
	return b
}

func (b *tarB) file(name, body string) *tarB {
	return b.add(&tar.Header{Name: name, Typeflag: tar.TypeReg}, []byte(body))
}

func (b *tarB) dir(name string) *tarB {
	return b.add(&tar.Header{Name: name, Typeflag: tar.TypeDir}, nil)
}

// dirs adds a directory entry for p and each of its parents, so that an
// absolute host path such as the canary's exists inside the root too.
func (b *tarB) dirs(p string) *tarB {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i := range parts {
		b.dir(strings.Join(parts[:i+1], "/") + "/")
	}
	return b
}

func (b *tarB) symlink(name, target string) *tarB {
	return b.add(&tar.Header{Name: name, Linkname: target, Typeflag: tar.TypeSymlink, Mode: 0o777}, nil)
}

func (b *tarB) link(name, target string) *tarB {
	return b.add(&tar.Header{Name: name, Linkname: target, Typeflag: tar.TypeLink}, nil)
}

func (b *tarB) dev(name string, typ byte, major, minor int64) *tarB {
	return b.add(&tar.Header{Name: name, Typeflag: typ, Devmajor: major, Devminor: minor, Mode: 0o666}, nil)
}

func (b *tarB) fifo(name string) *tarB {
	return b.add(&tar.Header{Name: name, Typeflag: tar.TypeFifo, Mode: 0o600}, nil)
}

// whiteout adds the whiteout of dir/name (name ".wh..opq" makes dir
// opaque). Hostile whiteout names are written with file.
func (b *tarB) whiteout(dir, name string) *tarB {
	return b.file(path.Join(dir, ".wh."+name), "")
}

func (b *tarB) opaque(dir string) *tarB { return b.whiteout(dir, ".wh..opq") }

// raw appends p, which must be whole 512-byte blocks, after the entries
// written so far.
func (b *tarB) raw(p []byte) *tarB {
	b.t.Helper()
	if err := b.tw.Flush(); err != nil {
		b.t.Fatal(err)
	}
	b.buf.Write(p)
	return b
}

// sparse adds a GNU 1.0 sparse entry in PAX form (which archive/tar reads
// but will not write): realSize bytes of holes but for data at off.
func (b *tarB) sparse(name string, realSize, off int64, data []byte) *tarB {
	pax := paxRecords(map[string]string{
		"GNU.sparse.major":    "1",
		"GNU.sparse.minor":    "0",
		"GNU.sparse.name":     name,
		"GNU.sparse.realsize": fmt.Sprint(realSize),
	})
	body := pad([]byte(fmt.Sprintf("1\n%d\n%d\n", off, len(data))))
	body = append(body, data...)
	var p []byte
	p = append(p, rawHeader("./PaxHeaders/sparse", tar.TypeXHeader, int64(len(pax)))...)
	p = append(p, pad(pax)...)
	p = append(p, rawHeader("GNUSparseFile.0/sparse", tar.TypeReg, int64(len(body)))...)
	p = append(p, pad(body)...)
	return b.raw(p)
}

// oldSparse adds an old GNU sparse entry (type 'S', the map in the
// header), as GNU tar --sparse --format=gnu writes: realSize bytes of
// holes but for data at off.
func (b *tarB) oldSparse(name string, realSize, off int64, data []byte) *tarB {
	h := rawHeader(name, tar.TypeGNUSparse, int64(len(data)))
	octal := func(f []byte, v int64) { copy(f, fmt.Sprintf("%0*o", len(f)-1, v)) }
	copy(h[257:265], "ustar  \x00")
	octal(h[386:398], off)
	octal(h[398:410], int64(len(data)))
	octal(h[483:495], realSize)
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b.raw(append(h, pad(append([]byte(nil), data...))...))
}

// bytes closes the archive and returns it.
func (b *tarB) bytes() []byte {
	b.t.Helper()
	if err := b.tw.Close(); err != nil {
		b.t.Fatal(err)
	}
	return b.buf.Bytes()
}

// truncated returns what was written so far, without the rest of the
// current entry's data or the end-of-archive blocks.
func (b *tarB) truncated() []byte { return b.buf.Bytes() }

func pad(p []byte) []byte {
	if n := len(p) % 512; n != 0 {
		p = append(p, make([]byte, 512-n)...)
	}
	return p
}

// paxRecords encodes PAX records ("LEN key=value\n", LEN counting itself).
func paxRecords(recs map[string]string) []byte {
	var out []byte
	for _, k := range []string{"GNU.sparse.major", "GNU.sparse.minor", "GNU.sparse.name", "GNU.sparse.realsize"} {
		v, ok := recs[k]
		if !ok {
			continue
		}
		rest := " " + k + "=" + v + "\n"
		n := len(rest) + 1
		for len(fmt.Sprint(n))+len(rest) != n {
			n++
		}
		out = append(out, fmt.Sprintf("%d%s", n, rest)...)
	}
	return out
}

// rawHeader is a ustar header block built by hand.
func rawHeader(name string, typ byte, size int64) []byte {
	h := make([]byte, 512)
	octal := func(f []byte, v int64) { copy(f, fmt.Sprintf("%0*o", len(f)-1, v)) }
	copy(h[0:100], name)
	octal(h[100:108], 0o644)
	octal(h[108:116], 0)
	octal(h[116:124], 0)
	octal(h[124:136], size)
	octal(h[136:148], epoch.Unix())
	h[156] = typ
	copy(h[257:265], "ustar\x0000")
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

// testLayer is a layer blob with its descriptor and diffID. R, when set,
// is read instead of Blob (bombs are never held uncompressed).
type testLayer struct {
	Blob   []byte
	R      io.Reader
	Desc   ocispec.Descriptor
	DiffID digest.Digest
}

var mediaTypes = map[string]string{
	"none": ocispec.MediaTypeImageLayer,
	"gzip": ocispec.MediaTypeImageLayerGzip,
	"zstd": ocispec.MediaTypeImageLayerZstd,
}

// compress compresses p as kind ("none", "gzip" or "zstd").
func compress(t testing.TB, kind string, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch kind {
	case "none":
		return append([]byte(nil), p...)
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	default:
		t.Fatalf("unknown compression %q", kind)
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// mkLayer compresses the tar p and describes it.
func mkLayer(t testing.TB, kind string, p []byte) testLayer {
	t.Helper()
	blob := compress(t, kind, p)
	return testLayer{
		Blob: blob,
		Desc: ocispec.Descriptor{
			MediaType: mediaTypes[kind],
			Digest:    digest.FromBytes(blob),
			Size:      int64(len(blob)),
		},
		DiffID: digest.FromBytes(p),
	}
}

// apply runs unpack.Apply on l.
func apply(root string, l testLayer, o unpack.Options) (unpack.Report, error) {
	r := l.R
	if r == nil {
		r = bytes.NewReader(l.Blob)
	}
	return unpack.Apply(context.Background(), root, r, l.Desc, l.DiffID, o)
}

// bomb is a layer of files entries of size zero bytes each, compressed as
// kind (with no entry, size zero bytes after the end-of-archive marker). It is made of concatenated gzip members or zstd frames (both
// decoders read on across them), each compressing at most 16 MiB, so
// gigabytes of output cost a few megabytes and are never in memory.
func bomb(t testing.TB, kind string, files int, size int64) testLayer {
	t.Helper()
	const chunk = 16 << 20
	if size%chunk != 0 {
		t.Fatalf("bomb size %d is not a multiple of %d", size, chunk)
	}
	zeros := compress(t, kind, make([]byte, chunk))
	var parts []io.Reader
	for i := range files {
		hb := newTar(t)
		if err := hb.tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("bomb%03d", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: epoch}); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, bytes.NewReader(compress(t, kind, hb.truncated())))
		for range size / chunk {
			parts = append(parts, bytes.NewReader(zeros))
		}
	}
	parts = append(parts, bytes.NewReader(compress(t, kind, make([]byte, 1024))))
	if files == 0 { // the zeros follow the end of the archive
		for range size / chunk {
			parts = append(parts, bytes.NewReader(zeros))
		}
	}
	h := sha256.New()
	n, err := io.Copy(h, io.MultiReader(parts...))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		p.(*bytes.Reader).Seek(0, io.SeekStart)
	}
	return testLayer{
		R:    io.MultiReader(parts...),
		Desc: ocispec.Descriptor{MediaType: mediaTypes[kind], Digest: digest.NewDigest(digest.SHA256, h), Size: n},
	}
}
