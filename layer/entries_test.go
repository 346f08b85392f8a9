package layer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/layer"
)

// TestWriteEntries: entries described rather than read from a tree come
// out normalised (directory names, whole-second mtimes clamped to the
// epoch, sizes of the files as read), with the files' content, and a
// symlink put where a regular file was listed is refused.
func TestWriteEntries(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	content := bytes.Repeat([]byte("0123456789"), 100_000) // more than one read buffer
	if err := os.WriteFile(big, content, 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2001, 1, 1, 0, 0, 0, 500, time.UTC)
	late := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	epoch := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	entries := []layer.Entry{
		{Header: tar.Header{Name: "app", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: late}},
		{Header: tar.Header{Name: "app/big", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 1000, Gid: 50, ModTime: old, Size: 3}, File: big},
		{Header: tar.Header{Name: "app/empty", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: old}, File: empty},
		{Header: tar.Header{Name: "app/link", Typeflag: tar.TypeLink, Linkname: "app/big", ModTime: old}},
		{Header: tar.Header{Name: "app/motd", Typeflag: tar.TypeReg, Mode: 0o644}, Data: []byte("hello\n")},
		{Header: tar.Header{Name: "app/sym", Typeflag: tar.TypeSymlink, Linkname: "big", Mode: 0o777, ModTime: old}},
	}
	var buf bytes.Buffer
	d, err := layer.WriteEntries(context.Background(), &buf, entries, layer.Options{SourceDateEpoch: &epoch})
	if err != nil {
		t.Fatal(err)
	}
	got := readLayer(t, buf.Bytes(), d)
	want := []entry{
		{name: "app/", typ: tar.TypeDir, mode: 0o755, mtime: epoch},
		{name: "app/big", typ: tar.TypeReg, mode: 0o4755, uid: 1000, gid: 50, size: int64(len(content)), mtime: old.Truncate(time.Second)},
		{name: "app/empty", typ: tar.TypeReg, mode: 0o644, mtime: old.Truncate(time.Second)},
		{name: "app/link", link: "app/big", typ: tar.TypeLink, mtime: old.Truncate(time.Second)},
		{name: "app/motd", typ: tar.TypeReg, mode: 0o644, size: 6, mtime: time.Unix(0, 0)},
		{name: "app/sym", link: "big", typ: tar.TypeSymlink, mode: 0o777, mtime: old.Truncate(time.Second)},
	}
	for i := range got {
		got[i].mtime, got[i].pax = got[i].mtime.UTC(), nil
	}
	for i := range want {
		want[i].mtime = want[i].mtime.UTC()
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", got, want)
	}
	var again bytes.Buffer
	if d2, err := layer.WriteEntries(context.Background(), &again, entries, layer.Options{SourceDateEpoch: &epoch}); err != nil || d2.Digest != d.Digest {
		t.Errorf("second write: %v, digest %s, want %s", err, d2.Digest, d.Digest)
	}

	if err := os.Remove(big); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", big); err != nil {
		t.Fatal(err)
	}
	_, err = layer.WriteEntries(context.Background(), &bytes.Buffer{}, entries, layer.Options{})
	if err == nil || !strings.Contains(err.Error(), "app/big") {
		t.Errorf("a symlink swapped in for a file: %v, want an error naming it", err)
	}
}
