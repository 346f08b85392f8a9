package build

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgtool/imgtool/unpack"
)

// overlaySteps delete lower-layer files, replace a directory wholesale
// (opaque), replace a file with a directory and a directory with a file,
// and run over the upper directories of the steps before.
const overlaySteps = `FROM base:1
RUN mkdir -p /d/sub /repl/in /d2f/in && echo x > /d/x && echo y > /d/sub/y && echo o > /repl/in/o && echo f > /f2d && echo k > /keep && echo i > /d2f/in/i
RUN rm /d/x && rm -r /d/sub && rm -r /repl && mkdir /repl && echo n > /repl/n && rm /f2d && mkdir /f2d && echo c > /f2d/c && rm -r /d2f && echo file > /d2f && rm /etc/group
RUN echo again > /d/x && cat /keep /repl/n /f2d/c /d2f > /all && ls /repl > /repl-list && test ! -e /etc/group
`

// TestOverlayRunMatchesTreeRun: RUN steps on an overlay over the unpack
// cache give, layer for layer, the image that RUN steps on a writable
// copy diffed against a snapshot give, and the same when the executor
// refuses the overlay and the build falls back to the copy.
func TestOverlayRunMatchesTreeRun(t *testing.T) {
	s := baseStore(t)
	ctxDir := contextDir(t, map[string]string{"unused": "x"})
	epoch := time.Unix(1700000000, 0).UTC()
	build := func(exe unshareExecutor, withUnpack bool) (Result, string) {
		t.Helper()
		var out bytes.Buffer
		b := &Builder{Store: s, Executor: exe, TempDir: filepath.Join(t.TempDir(), "tmp"), Progress: &out}
		if withUnpack {
			uc, err := unpack.OpenCache(context.Background(), filepath.Join(t.TempDir(), "unpack"), unpack.Options{Rootless: os.Geteuid() != 0})
			if err != nil {
				t.Fatal(err)
			}
			b.Unpack = uc
		}
		res, err := b.Build(context.Background(), Request{ContextDir: ctxDir, Dockerfile: []byte(overlaySteps), SourceDateEpoch: &epoch})
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out.String())
		}
		if entries, _ := os.ReadDir(b.TempDir); len(entries) != 0 {
			t.Errorf("temporary files left: %v", entries)
		}
		return res, out.String()
	}
	var n atomic.Int32
	overlay, _ := build(unshareExecutor{overlays: &n}, true)
	if n.Load() != 3 {
		t.Fatalf("%d RUN steps ran on an overlay, want 3", n.Load())
	}
	tree, _ := build(unshareExecutor{}, false)
	refused, out := build(unshareExecutor{noOverlay: true}, true)
	if !strings.Contains(out, "diff a copy of the root filesystem instead") {
		t.Errorf("no warning for the refused overlay:\n%s", out)
	}
	if overlay.Manifest.Digest != tree.Manifest.Digest || refused.Manifest.Digest != tree.Manifest.Digest {
		t.Fatalf("overlay %s, writable copy %s, refused overlay %s: want one image", overlay.Manifest.Digest, tree.Manifest.Digest, refused.Manifest.Digest)
	}
	second := layerFiles(t, s, overlay, 2)
	for _, name := range []string{"d/.wh.x", "d/.wh.sub", "repl/.wh..wh..opq", "repl/n", "f2d/c", "d2f", "etc/.wh.group"} {
		if _, ok := second[name]; !ok {
			t.Errorf("the second RUN's layer lacks %s: %v", name, keys(second))
		}
	}
	if _, ok := second["f2d/.wh..wh..opq"]; ok {
		t.Errorf("a directory that replaced a file is marked opaque: %v", keys(second))
	}
	third := layerFiles(t, s, overlay, 3)
	if e, ok := third["all"]; !ok || e.data != "k\nn\nc\nfile\n" {
		t.Errorf("/all: %+v; the third RUN did not see the layers below it", e)
	}
	if e := third["repl-list"]; e.data != "n\n" {
		t.Errorf("/repl lists %q: the opaque directory let the lower one through", e.data)
	}
}
