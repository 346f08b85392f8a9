package writebehind

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func TestPacer(t *testing.T) {
	const c = 100
	type step struct {
		end         int64
		start, wait span
		ok          bool
	}
	for _, tc := range []struct {
		name  string
		from  int64
		steps []step
	}{
		{name: "nothing until a chunk", steps: []step{{end: 0}, {end: 1}, {end: 99}}},
		{name: "first chunk starts, nothing to wait for", steps: []step{{end: 100, start: span{0, 100}, ok: true}}},
		{name: "each chunk waits for the one before", steps: []step{
			{end: 150, start: span{0, 150}, ok: true},
			{end: 249},
			{end: 250, start: span{150, 100}, wait: span{0, 150}, ok: true},
			{end: 600, start: span{250, 350}, wait: span{150, 100}, ok: true},
			{end: 650},
		}},
		{name: "an appended file starts at its size", from: 1000, steps: []step{
			{end: 1050},
			{end: 1100, start: span{1000, 100}, ok: true},
			{end: 1200, start: span{1100, 100}, wait: span{1000, 100}, ok: true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pacer{chunk: c, started: tc.from, waited: tc.from}
			for _, s := range tc.steps {
				start, wait, ok := p.advance(s.end)
				if start != s.start || wait != s.wait || ok != s.ok {
					t.Fatalf("at %d: start %v wait %v ok %v, want %v %v %v", s.end, start, wait, ok, s.start, s.wait, s.ok)
				}
			}
		})
	}
}

func newDriver(t *testing.T) (storagedriver.StorageDriver, string) {
	root := t.TempDir()
	return New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 25}), root
}

// write appends data to path in pieces of size piece, as uploads arrive.
func write(t *testing.T, d storagedriver.StorageDriver, path string, appendTo bool, data []byte, piece int) storagedriver.FileWriter {
	t.Helper()
	fw, err := d.Writer(context.Background(), path, appendTo)
	if err != nil {
		t.Fatal(err)
	}
	for len(data) > 0 {
		n := min(piece, len(data))
		if m, err := fw.Write(data[:n]); err != nil || m != n {
			t.Fatalf("write: %d of %d: %v", m, n, err)
		}
		data = data[n:]
	}
	return fw
}

func read(t *testing.T, d storagedriver.StorageDriver, path string) []byte {
	t.Helper()
	rc, err := d.Reader(context.Background(), path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriterKeepsEveryByte(t *testing.T) {
	ctx := context.Background()
	data := make([]byte, 2*Chunk+Chunk/3)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	for _, piece := range []int{1 << 10, 32 << 10, 256 << 10, Chunk + 1} {
		d, _ := newDriver(t)
		// Written in two appends, as a PATCH and a resumed PATCH are.
		half := len(data)/2 + 12345
		fw := write(t, d, "/up/data", false, data[:half], piece)
		if fw.Size() != int64(half) {
			t.Fatalf("size %d, want %d", fw.Size(), half)
		}
		if err := fw.Close(); err != nil {
			t.Fatal(err)
		}
		fw = write(t, d, "/up/data", true, data[half:], piece)
		if err := fw.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := fw.Close(); err != nil {
			t.Fatal(err)
		}
		if got := read(t, d, "/up/data"); !bytes.Equal(got, data) {
			t.Fatalf("pieces of %d: read back %d bytes that differ from the %d written", piece, len(got), len(data))
		}
		if err := d.Move(ctx, "/up/data", "/blobs/data"); err != nil {
			t.Fatal(err)
		}
		if got := read(t, d, "/blobs/data"); !bytes.Equal(got, data) {
			t.Fatal("moved file differs")
		}
	}
}

func TestWriterCancelRemoves(t *testing.T) {
	d, root := newDriver(t)
	fw := write(t, d, "/up/data", false, make([]byte, Chunk+5), 1<<20)
	if err := fw.Cancel(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "up", "data")); !os.IsNotExist(err) {
		t.Fatalf("cancelled upload still there: %v", err)
	}
}

func TestWriterTruncates(t *testing.T) {
	ctx := context.Background()
	d, _ := newDriver(t)
	fw := write(t, d, "/f", false, bytes.Repeat([]byte("old"), 1000), 100)
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	fw = write(t, d, "/f", false, []byte("new"), 100)
	if err := fw.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, "/f"); string(got) != "new" {
		t.Fatalf("read %q after rewriting, want %q", got, "new")
	}
}

func TestWriterRefusesBadPaths(t *testing.T) {
	d, _ := newDriver(t)
	for _, p := range []string{"", "relative", "/a//b", "/a/"} {
		if fw, err := d.Writer(context.Background(), p, false); err == nil {
			fw.Cancel(context.Background())
			t.Errorf("Writer(%q) succeeded", p)
		}
	}
}

func TestWriterHintsAsItGrows(t *testing.T) {
	d, root := newDriver(t)
	fw, err := d.Writer(context.Background(), "/up/data", false)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := fw.(*writer)
	if !ok {
		t.Fatalf("Writer returned %T, not the write-behind writer", fw)
	}
	var starts, waits []span
	w.hint = func(f *os.File, start, wait span) {
		if f.Name() != filepath.Join(root, "up", "data") {
			t.Errorf("hint on %s", f.Name())
		}
		starts, waits = append(starts, start), append(waits, wait)
	}
	piece := make([]byte, Chunk/2)
	for range 5 {
		if _, err := w.Write(piece); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wantStarts := []span{{0, Chunk}, {Chunk, Chunk}}
	wantWaits := []span{{}, {0, Chunk}}
	if fmt.Sprint(starts, waits) != fmt.Sprint(wantStarts, wantWaits) {
		t.Fatalf("started %v and waited for %v, want %v and %v", starts, waits, wantStarts, wantWaits)
	}
}

// The flags are valid here: sync_file_range refuses unknown ones with EINVAL.
func TestWritebackCalls(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 3<<20)); err != nil {
		t.Fatal(err)
	}
	if err := startWriteback(f, span{1 << 20, 2 << 20}); err != nil {
		t.Fatalf("start: %v", err)
	}
	if err := awaitWriteback(f, span{0, 1 << 20}); err != nil {
		t.Fatalf("await: %v", err)
	}
}
