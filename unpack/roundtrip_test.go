package unpack_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/unpack"
	"golang.org/x/sys/unix"
)

// TestRoundTrip: a tree written as a layer and applied back gives the same
// tree, and rewriting the result gives the same layer.
func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "etc", "ro"), 0o755)
	os.WriteFile(filepath.Join(src, "etc", "hosts"), []byte("127.0.0.1 localhost\n"), 0o644)
	os.WriteFile(filepath.Join(src, "etc", "ro", "file"), []byte("x"), 0o644)
	unix.Chmod(filepath.Join(src, "etc", "ro"), 0o555)
	os.WriteFile(filepath.Join(src, "suid"), []byte("#!/bin/sh\n"), 0o755)
	unix.Chmod(filepath.Join(src, "suid"), 0o4755)
	os.Symlink("etc/hosts", filepath.Join(src, "hosts"))
	os.Link(filepath.Join(src, "etc", "hosts"), filepath.Join(src, "hosts.hard"))
	unix.Mkfifo(filepath.Join(src, "fifo"), 0o600)
	for _, c := range []layer.Compression{layer.Zstd, layer.Gzip, layer.None} {
		t.Run(string(c), func(t *testing.T) {
			ch, err := layer.Dir(src)
			if err != nil {
				t.Fatal(err)
			}
			var blob bytes.Buffer
			d, err := layer.Write(context.Background(), &blob, src, ch, layer.Options{Compression: c})
			if err != nil {
				t.Fatal(err)
			}
			dst := t.TempDir()
			rep, err := unpack.Apply(context.Background(), dst, bytes.NewReader(blob.Bytes()), d.Descriptor, d.DiffID, unpack.Options{})
			if err != nil {
				t.Fatalf("apply: %v (%+v)", err, rep)
			}
			ch2, _ := layer.Dir(dst)
			var again bytes.Buffer
			d2, err := layer.Write(context.Background(), &again, dst, ch2, layer.Options{Compression: c})
			if err != nil {
				t.Fatal(err)
			}
			if d2.DiffID != d.DiffID {
				t.Errorf("tree changed through a round trip: diffID %s, then %s", d.DiffID, d2.DiffID)
			}
			var st unix.Stat_t
			unix.Lstat(filepath.Join(dst, "suid"), &st)
			if st.Mode&0o7777 != 0o4755 {
				t.Errorf("suid mode %o", st.Mode&0o7777)
			}
			var a, b unix.Stat_t
			unix.Stat(filepath.Join(dst, "etc", "hosts"), &a)
			unix.Stat(filepath.Join(dst, "hosts.hard"), &b)
			if a.Ino != b.Ino {
				t.Error("hard link became a copy")
			}
		})
	}
}
