package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgtool/imgtool/unpack"
	"github.com/opencontainers/go-digest"
)

// TestKeyAfterReadsOnce: with nothing in the step cache to hit, a COPY
// from the context runs before it is keyed and reads each file once, as
// it writes it; the key it records is the one keying first gives (a
// rebuild hits it), and the image is the one a build that keys first
// makes.
func TestKeyAfterReadsOnce(t *testing.T) {
	s := baseStore(t)
	files := map[string]string{}
	for i := range 40 {
		files[fmt.Sprintf("d%d/f%d", i%4, i)] = fmt.Sprint("content ", i)
	}
	ctxDir := contextDir(t, files)
	// A digest taken within racyWindow of a file's last change (its
	// ctime, which no one can set back) is not trusted: let it pass.
	time.Sleep(2 * time.Duration(racyWindow))
	const dockerfile = "FROM base:1\nCOPY . /data\nRUN ls /data/d1 > /list\n"
	epoch := time.Unix(1700000000, 0).UTC()
	uc, err := unpack.OpenCache(context.Background(), filepath.Join(t.TempDir(), "unpack"), unpack.Options{Rootless: os.Geteuid() != 0})
	if err != nil {
		t.Fatal(err)
	}
	build := func(cache *Cache) (Result, int64) {
		t.Helper()
		var reads atomic.Int64
		var out bytes.Buffer
		b := &Builder{Store: s, Executor: unshareExecutor{}, TempDir: filepath.Join(t.TempDir(), "tmp"), Progress: &out,
			Cache: cache, Unpack: uc, keyReads: &reads}
		res, err := b.Build(context.Background(), Request{ContextDir: ctxDir, Dockerfile: []byte(dockerfile), SourceDateEpoch: &epoch})
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out.String())
		}
		return res, reads.Load()
	}
	empty, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first, reads := build(empty)
	if first.Ran != 2 {
		t.Fatalf("%d steps ran, want the COPY and the RUN", first.Ran)
	}
	if reads != 0 {
		t.Errorf("with an empty step cache, keying read %d files again", reads)
	}
	again, reads := build(empty)
	if again.Ran != 0 || reads != 0 || again.Manifest.Digest != first.Manifest.Digest {
		t.Errorf("rebuild: %d steps ran, %d files read, image %s (first %s); want every step from the cache", again.Ran, reads, again.Manifest.Digest, first.Manifest.Digest)
	}
	// A step cache holding something else: the COPY is keyed first,
	// reading every file (this cache has no stat cache yet).
	other, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Put(Record{Key: digest.FromString("another step"), Created: epoch}); err != nil {
		t.Fatal(err)
	}
	keyedFirst, reads := build(other)
	if keyedFirst.Ran != 2 || reads != int64(len(files)) {
		t.Errorf("keyed first: %d steps ran, %d files read, want 2 and %d", keyedFirst.Ran, reads, len(files))
	}
	if keyedFirst.Manifest.Digest != first.Manifest.Digest {
		t.Errorf("keyed first: image %s, keyed after: %s", keyedFirst.Manifest.Digest, first.Manifest.Digest)
	}
}
