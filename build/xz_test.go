package build

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/store"
	"github.com/opencontainers/go-digest"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// xzTool compresses data with the xz command (xz-utils), an encoder
// independent of the Go decoder under test.
func xzTool(t testing.TB, data []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("xz", append([]string{"-c"}, args...)...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz %v: %v (the tests need xz-utils)", args, err)
	}
	return out
}

// noise is data that compresses a little, so that blocks have content.
func noise(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(8))
	}
	return b
}

// withDict rewrites the LZMA2 dictionary size of the first block header
// of a single-threaded xz file (one filter, no size fields), CRC
// included.
func withDict(t *testing.T, file []byte, dict int64) []byte {
	t.Helper()
	out := bytes.Clone(file)
	hdr := out[12 : 12+(int(out[12])+1)*4]
	if hdr[1] != 0 || hdr[2] != 0x21 || hdr[3] != 1 {
		t.Fatalf("unexpected block header % x", hdr)
	}
	hdr[4] = lzma.EncodeDictCap(dict)
	binary.LittleEndian.PutUint32(hdr[len(hdr)-4:], crc32.ChecksumIEEE(hdr[:len(hdr)-4]))
	return out
}

func TestCheckXZ(t *testing.T) {
	data := noise(256 << 10)
	single := xzTool(t, data, "-T1")
	blocks := xzTool(t, data, "-T2", "--block-size=16KiB")
	padding := append(append(bytes.Clone(single), 0, 0, 0, 0), blocks...)
	for _, tc := range []struct {
		name string
		file []byte
		want error
		data []byte // what it decompresses to, when it is valid
	}{
		{"one block", single, nil, data},
		{"sixteen blocks", blocks, nil, data},
		{"empty input", xzTool(t, nil), nil, nil},
		{"two streams with padding between", padding, nil, append(bytes.Clone(data), data...)},
		{"trailing padding", append(bytes.Clone(single), 0, 0, 0, 0, 0, 0, 0, 0), nil, data},
		{"64 MiB dictionary (xz -9)", withDict(t, single, 64<<20), nil, data},
		{"256 MiB dictionary", withDict(t, single, 256<<20), errXZDict, nil},
		{"4 GiB dictionary", withDict(t, single, 1<<32-1), errXZDict, nil},
		{"truncated", single[:len(single)/2], errXZCorrupt, nil},
		{"truncated footer", single[:len(single)-3], errXZCorrupt, nil},
		{"trailing garbage", append(bytes.Clone(single), "garbage!"...), errXZCorrupt, nil},
		{"magic only", xzMagic, errXZCorrupt, nil},
		{"index too large", func() []byte {
			f := bytes.Clone(single)
			binary.LittleEndian.PutUint32(f[len(f)-8:], 1<<30)
			return f
		}(), errXZCorrupt, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := openXZ(bytes.NewReader(tc.file), int64(len(tc.file)))
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("openXZ: %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("decompress: %v", err)
			}
			if !bytes.Equal(got, tc.data) {
				t.Errorf("decompressed %d bytes, want %d", len(got), len(tc.data))
			}
		})
	}
}

// FuzzCheckXZ: hostile xz files are refused or checked, never a panic or
// a hang, and a file checkXZ accepts never asks for a larger dictionary.
func FuzzCheckXZ(f *testing.F) {
	f.Add(xzTool(f, []byte("hello\n")))
	f.Add(xzTool(f, noise(64<<10), "-T2", "--block-size=8KiB"))
	f.Add(append(xzTool(f, nil), 0, 0, 0, 0))
	f.Add([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'Y', 'Z'})
	f.Fuzz(func(t *testing.T, file []byte) {
		if err := checkXZ(bytes.NewReader(file), int64(len(file)), 1<<20); err != nil {
			return
		}
		// Accepted with a 1 MiB bound: decoding must not need more.
		r, err := xz.ReaderConfig{DictCap: 1 << 20}.NewReader(bytes.NewReader(file))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(r, 4<<20))
	})
}

// TestAddXZ: ADD extracts a tar.xz (made by xz-utils, several blocks)
// as it does gzip, bzip2 and zstd; copies an xz file that is not a tar
// as it is; and refuses a broken one, naming it, with no image made.
func TestAddXZ(t *testing.T) {
	s := baseStore(t)
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	mt := time.Unix(1600000000, 0)
	big := noise(100 << 10)
	tw.WriteHeader(&tar.Header{Name: "pkg/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt})
	tw.WriteHeader(&tar.Header{Name: "pkg/big", Typeflag: tar.TypeReg, Mode: 0o640, Size: int64(len(big)), Uid: 1234, Gid: 1234, ModTime: mt})
	tw.Write(big)
	tw.WriteHeader(&tar.Header{Name: "pkg/link", Typeflag: tar.TypeSymlink, Linkname: "big", ModTime: mt})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	archive := xzTool(t, tarball.Bytes(), "-T2", "--block-size=32KiB")
	for name, data := range map[string][]byte{
		"bundle.tar.xz": archive,
		"notes.txt.xz":  xzTool(t, []byte("not a tar\n")),
		"broken.tar.xz": archive[:len(archive)-20],
	} {
		if err := os.WriteFile(filepath.Join(ctxDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := mustBuild(t, s, ctxDir, "FROM base:1\nADD bundle.tar.xz /opt/\nADD notes.txt.xz /doc/\n")
	files := layerFiles(t, s, res, 1)
	if f := files["opt/pkg/big"]; f.data != string(big) || f.hdr.Uid != 1234 || f.hdr.Mode != 0o640 {
		t.Errorf("extracted file: %+v (%d bytes)", f.hdr, len(f.data))
	}
	if f := files["opt/pkg/link"]; f.hdr == nil || f.hdr.Linkname != "big" {
		t.Errorf("extracted symlink: %+v", f.hdr)
	}
	if f := layerFiles(t, s, res, 2)["doc/notes.txt.xz"]; f.data != string(xzTool(t, []byte("not a tar\n"))) {
		t.Errorf("an xz file that is not a tar was not copied as it is: %q", f.data)
	}

	before := storeState(t, s)
	_, _, err := testBuild(t, s, ctxDir, "FROM base:1\nADD broken.tar.xz /opt/\n", nil)
	if err == nil || !strings.Contains(err.Error(), "broken.tar.xz") || !strings.Contains(err.Error(), "corrupt or truncated xz") {
		t.Errorf("broken xz: %v", err)
	}
	if after := storeState(t, s); after != before {
		t.Errorf("a failed ADD changed the store:\n%s\nthen\n%s", before, after)
	}
}

// storeState sums up the store: its blobs and its names, so that a test
// sees a failed build change neither.
func storeState(t *testing.T, s *store.Store) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	if err := s.Walk(ctx, func(d digest.Digest, _ int64) error {
		b.WriteString(d.String() + "\n")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	imgs, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		fmt.Fprintf(&b, "%s %s\n", img.Name, img.Descriptor.Digest)
	}
	return b.String()
}
