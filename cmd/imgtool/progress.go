package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imgtool/imgtool/store/transport"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// progressMode resolves "auto" to "tty" or "plain" for stream w, honouring
// NO_COLOR and TERM=dumb as crane does.
func progressMode(mode string, w *os.File) string {
	if mode != "auto" {
		return mode
	}
	// A pseudo-terminal without a size (script(1) in CI) cannot hold bars.
	if cols, _, err := term.GetSize(int(w.Fd())); err == nil && cols > 0 && os.Getenv("TERM") != "dumb" && os.Getenv("NO_COLOR") == "" {
		return "tty"
	}
	return "plain"
}

// display is a transport.Progress that renders on one stream; Wait must be
// called once the copy has returned.
type display interface {
	transport.Progress
	Wait()
}

func newDisplay(ctx context.Context, mode string, w *os.File) display {
	switch progressMode(mode, w) {
	case "tty":
		return &barDisplay{p: mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithWidth(30), mpb.WithAutoRefresh())}
	case "plain":
		return &lineDisplay{w: w}
	}
	return quietDisplay{}
}

type quietDisplay struct{}

func (quietDisplay) Blob(ocispec.Descriptor) transport.BlobProgress { return quietBlob{} }
func (quietDisplay) Wait()                                          {}

type quietBlob struct{}

func (quietBlob) Skipped(string) {}
func (quietBlob) Add(int64)      {}
func (quietBlob) Done(error)     {}

// lineDisplay prints one line per blob when it ends: what CI logs want
// (one line, not a stream of updates; moby/buildkit#4133).
type lineDisplay struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineDisplay) Blob(d ocispec.Descriptor) transport.BlobProgress {
	return &lineBlob{l: l, d: d, start: time.Now()}
}
func (l *lineDisplay) Wait() {}

func (l *lineDisplay) printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format, a...)
}

type lineBlob struct {
	l     *lineDisplay
	d     ocispec.Descriptor
	start time.Time
	mu    sync.Mutex
	n     int64
}

func (b *lineBlob) Skipped(reason string) {
	b.l.printf("%s %s %s\n", shortDigest(b.d.Digest.String()), reason, humanSize(b.d.Size))
}

func (b *lineBlob) Add(n int64) {
	b.mu.Lock()
	b.n += n
	b.mu.Unlock()
}

func (b *lineBlob) Done(err error) {
	if err != nil {
		b.l.printf("%s failed: %v\n", shortDigest(b.d.Digest.String()), err)
		return
	}
	el := time.Since(b.start)
	b.l.printf("%s done %s in %s (%s/s)\n", shortDigest(b.d.Digest.String()), humanSize(b.d.Size),
		el.Round(time.Millisecond), humanSize(int64(float64(b.d.Size)/max(el.Seconds(), 1e-3))))
}

// barDisplay draws a bar per blob with bytes and rate. A bar appears when
// the blob's first bytes move; skipped blobs get a line above the bars.
type barDisplay struct{ p *mpb.Progress }

func (d *barDisplay) Blob(desc ocispec.Descriptor) transport.BlobProgress {
	return &barBlob{p: d.p, d: desc}
}

func (d *barDisplay) Wait() { d.p.Wait() }

type barBlob struct {
	p       *mpb.Progress
	d       ocispec.Descriptor
	once    sync.Once
	bar     *mpb.Bar
	skipped atomic.Value // reason, once skipped
}

func (b *barBlob) start() *mpb.Bar {
	b.once.Do(func() {
		b.bar = b.p.AddBar(b.d.Size,
			mpb.PrependDecorators(decor.Name(shortDigest(b.d.Digest.String()), decor.WC{C: decor.DindentRight | decor.DextraSpace})),
			mpb.AppendDecorators(decor.Any(b.status), decor.Name(" "),
				decor.OnAbort(decor.OnComplete(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), ""), "")),
		)
	})
	return b.bar
}

func (b *barBlob) status(s decor.Statistics) string {
	switch {
	case b.skipped.Load() != nil:
		return b.skipped.Load().(string) + " " + humanSize(s.Total)
	case s.Aborted:
		return "failed"
	case s.Completed:
		return "done " + humanSize(s.Total)
	}
	return humanSize(s.Current) + " / " + humanSize(s.Total)
}

// Skipped shows the blob as a finished bar that says why it moved nothing.
func (b *barBlob) Skipped(reason string) {
	b.skipped.Store(reason)
	b.start().Abort(false)
}

func (b *barBlob) Add(n int64) { b.start().IncrInt64(n) }

func (b *barBlob) Done(err error) {
	bar := b.start()
	if err != nil {
		bar.Abort(false)
		return
	}
	bar.SetTotal(-1, true)
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// humanSize prints sizes as docker does (decimal units).
func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for f >= unit && i < 5 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.3g %cB", f, "kMGTPE"[i-1])
}
