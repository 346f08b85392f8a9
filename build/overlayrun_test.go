package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// TestBackgroundLayers: the layer of an overlay RUN is written while the
// next steps run; its failure fails the build with its own error and
// cancels the step running meanwhile; a later step's failure cancels it
// and the build waits for it before returning.
func TestBackgroundLayers(t *testing.T) {
	s := baseStore(t)
	ctxDir := contextDir(t, map[string]string{"unused": "x"})
	build := func(dockerfile string, hook func(context.Context, string) error, after func([]string)) (string, error) {
		t.Helper()
		uc, err := unpack.OpenCache(context.Background(), filepath.Join(t.TempDir(), "unpack"), unpack.Options{Rootless: os.Geteuid() != 0})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		b := &Builder{Store: s, Executor: afterExecutor{after: after}, TempDir: filepath.Join(t.TempDir(), "tmp"), Progress: &out, Unpack: uc, bgHook: hook}
		_, err = b.Build(context.Background(), Request{ContextDir: ctxDir, Dockerfile: []byte(dockerfile)})
		return out.String(), err
	}
	t.Run("written while the next step runs", func(t *testing.T) {
		// The first RUN's layer is written only once the second RUN has
		// run: the steps did not wait for it.
		second := make(chan struct{})
		var waited atomic.Bool
		hook := func(ctx context.Context, by string) error {
			if strings.Contains(by, "echo one") {
				select {
				case <-second:
					waited.Store(true)
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}
		after := func(args []string) {
			if strings.Contains(strings.Join(args, " "), "echo two") {
				close(second)
			}
		}
		if out, err := build("FROM base:1\nRUN echo one > /one\nRUN echo two > /two\n", hook, after); err != nil || !waited.Load() {
			t.Fatalf("build: %v (the first layer waited for the second: %v)\n%s", err, waited.Load(), out)
		}
	})
	t.Run("a failed layer fails the build", func(t *testing.T) {
		out, err := build("FROM base:1\nRUN echo one > /one\nRUN sleep 20 && echo finished-the-$((6*7))\n", func(_ context.Context, by string) error {
			if strings.Contains(by, "echo one") {
				return errors.New("injected write failure")
			}
			return nil
		}, nil)
		if err == nil || !strings.Contains(err.Error(), "injected write failure") || !strings.Contains(err.Error(), "echo one") {
			t.Fatalf("build: %v, want the layer's failure\n%s", err, out)
		}
		if strings.Contains(out, "finished-the-42") {
			t.Errorf("the step after the failed layer ran to its end:\n%s", out)
		}
	})
	t.Run("a failed step cancels the layer being written", func(t *testing.T) {
		var cancelled atomic.Bool
		_, err := build("FROM base:1\nRUN echo one > /one\nRUN exit 3\n", func(ctx context.Context, by string) error {
			if strings.Contains(by, "echo one") {
				<-ctx.Done()
				cancelled.Store(true)
				return ctx.Err()
			}
			return nil
		}, nil)
		if err == nil || !strings.Contains(err.Error(), "exit code: 3") {
			t.Fatalf("build: %v, want the failed step's error", err)
		}
		if !cancelled.Load() {
			t.Error("the build returned before the layer being written was cancelled and done")
		}
	})
}

// afterExecutor is unshareExecutor calling after with each step's argv
// once it has run.
type afterExecutor struct {
	unshareExecutor
	after func(args []string)
}

func (a afterExecutor) Run(ctx context.Context, s RunSpec) (int, error) {
	code, err := a.unshareExecutor.Run(ctx, s)
	if a.after != nil {
		a.after(s.Args)
	}
	return code, err
}

// TestCopyFromOverlayStage: COPY --from and a bind mount read a stage
// whose RUN steps ran on overlays (it has no tree of its own) from the
// unpack cache's entry, and the image is the one a build without the
// unpack cache makes.
func TestCopyFromOverlayStage(t *testing.T) {
	s := baseStore(t)
	ctxDir := contextDir(t, map[string]string{"unused": "x"})
	const dockerfile = `FROM base:1 AS b
RUN mkdir -p /out && echo built > /out/x && rm /etc/group
FROM base:1
COPY --from=b /out /got/
RUN --mount=from=b,source=/out,target=/m cat /m/x > /seen
`
	epoch := time.Unix(1700000000, 0).UTC()
	var digests []string
	for _, withUnpack := range []bool{true, false} {
		var out bytes.Buffer
		b := &Builder{Store: s, Executor: unshareExecutor{}, TempDir: filepath.Join(t.TempDir(), "tmp"), Progress: &out}
		if withUnpack {
			uc, err := unpack.OpenCache(context.Background(), filepath.Join(t.TempDir(), "unpack"), unpack.Options{Rootless: os.Geteuid() != 0})
			if err != nil {
				t.Fatal(err)
			}
			b.Unpack = uc
		}
		res, err := b.Build(context.Background(), Request{ContextDir: ctxDir, Dockerfile: []byte(dockerfile), SourceDateEpoch: &epoch})
		if err != nil {
			t.Fatalf("build (unpack cache: %v): %v\n%s", withUnpack, err, out.String())
		}
		if e := imageFile(t, s, res, "seen"); e.data != "built\n" {
			t.Errorf("/seen: %q", e.data)
		}
		digests = append(digests, res.Manifest.Digest.String())
	}
	if digests[0] != digests[1] {
		t.Errorf("with the unpack cache %s, without %s", digests[0], digests[1])
	}
}

// TestOverlayRunDeepStack: past maxUppers RUN steps in a row the stack
// starts again from the unpack cache's entry, and every step still sees
// what the ones before it did.
func TestOverlayRunDeepStack(t *testing.T) {
	s := baseStore(t)
	ctxDir := contextDir(t, map[string]string{"unused": "x"})
	var df strings.Builder
	df.WriteString("FROM base:1\nRUN echo 0 > /count\n")
	for i := 1; i <= maxUppers+3; i++ {
		fmt.Fprintf(&df, "RUN test \"$(cat /count)\" = %d && echo %d > /count && touch /f%d\n", i-1, i, i)
	}
	ucDir := filepath.Join(t.TempDir(), "unpack")
	uc, err := unpack.OpenCache(context.Background(), ucDir, unpack.Options{Rootless: os.Geteuid() != 0})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	var out bytes.Buffer
	b := &Builder{Store: s, Executor: unshareExecutor{overlays: &n}, TempDir: filepath.Join(t.TempDir(), "tmp"), Progress: &out, Unpack: uc}
	res, err := b.Build(context.Background(), Request{ContextDir: ctxDir, Dockerfile: []byte(df.String())})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	if want := int32(maxUppers + 4); n.Load() != want {
		t.Errorf("%d RUN steps on an overlay, want %d", n.Load(), want)
	}
	if e := imageFile(t, s, res, "count"); e.data != fmt.Sprintln(maxUppers+3) {
		t.Errorf("/count: %q", e.data)
	}
	// The restart unpacked the RUN layers below it into chains.
	if chains, _ := filepath.Glob(filepath.Join(ucDir, "*", "chains", "*")); len(chains) <= maxUppers {
		t.Errorf("%d chains in the unpack cache: the stack never started again", len(chains))
	}
}
