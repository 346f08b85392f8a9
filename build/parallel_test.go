package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/unpack"
)

// rendezvous is a Dockerfile whose stages a and b each leave a marker in
// a cache mount they share and wait (at most WAIT tenths of a second)
// for the other's: it builds only when a and b run at the same time.
const rendezvous = `FROM base:1 AS a
ARG WAIT
RUN --mount=type=cache,id=meet,target=/meet touch /meet/a; i=0; while [ ! -e /meet/b ]; do i=$((i+1)); [ $i -le $WAIT ] || { echo a waited for b in vain; exit 7; }; sleep 0.1; done; echo a > /a

FROM base:1 AS b
ARG WAIT
RUN --mount=type=cache,id=meet,target=/meet touch /meet/b; i=0; while [ ! -e /meet/a ]; do i=$((i+1)); [ $i -le $WAIT ] || { echo b waited for a in vain; exit 7; }; sleep 0.1; done; echo b > /b

FROM base:1
COPY --from=a /a /a
COPY --from=b /b /b
`

func parallelBuild(t *testing.T, s *store.Store, jobs int, dockerfile string, mod func(*Request)) (Result, string, error) {
	t.Helper()
	var out bytes.Buffer
	b := &Builder{Store: s, Executor: unshareExecutor{}, TempDir: filepath.Join(t.TempDir(), "tmp"), Progress: &out, Jobs: jobs}
	req := Request{ContextDir: t.TempDir(), Dockerfile: []byte(dockerfile)}
	if mod != nil {
		mod(&req)
	}
	res, err := b.Build(context.Background(), req)
	return res, out.String(), err
}

// TestStagesRunConcurrently: two stages that need each other's RUN to be
// running at once build with two jobs (and not with one, the bound), and
// their progress stays whole "#N" lines.
func TestStagesRunConcurrently(t *testing.T) {
	s := baseStore(t)
	wait := func(n string) func(*Request) {
		return func(r *Request) { r.BuildArgs = map[string]string{"WAIT": n} }
	}
	res, out, err := parallelBuild(t, s, 2, rendezvous, wait("600"))
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if f := layerFiles(t, s, res, -2)["a"]; f.data != "a\n" {
		t.Errorf("a: %q", f.data)
	}
	if f := layerFiles(t, s, res, -1)["b"]; f.data != "b\n" {
		t.Errorf("b: %q", f.data)
	}
	line := regexp.MustCompile(`^#\d+ (\[|DONE |CACHED$|ERROR: |\d+\.\d{3} |context: )`)
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !line.MatchString(l) {
			t.Errorf("progress line %q is not a whole step line\n%s", l, out)
		}
	}
	// One job at a time: each waits in vain for the other.
	if _, out, err := parallelBuild(t, s, 1, rendezvous, wait("10")); err == nil || !strings.Contains(err.Error(), "exit code: 7") {
		t.Errorf("with one job: %v\n%s", err, out)
	}
}

// TestParallelStagesReproducible: with SOURCE_DATE_EPOCH, whatever order
// the independent stages ran in (and with one to three at once), the
// image is the same.
func TestParallelStagesReproducible(t *testing.T) {
	s := baseStore(t)
	ctxDir := t.TempDir()
	mustWrite(t, filepath.Join(ctxDir, "f.txt"), "context file\n")
	for i := range 50 {
		mustWrite(t, filepath.Join(ctxDir, "dir", fmt.Sprint(i)), fmt.Sprint(i))
	}
	const dockerfile = `FROM base:1 AS slow
COPY . /ctx/
RUN i=0; while [ $i -lt 200 ]; do echo $i > /s$i; i=$((i+1)); done
FROM base:1 AS fast
COPY f.txt /f.txt
RUN echo fast > /fast
FROM base:1 AS mid
COPY --from=fast /f.txt /m.txt
FROM base:1
COPY --from=slow /s1 /s199 /out/
COPY --from=fast /fast /out/
COPY --from=mid /m.txt /out/
RUN cat /out/* > /all
`
	epoch := time.Unix(1700000000, 0).UTC()
	// The stages unpack base:1 from one unpack cache, at once.
	uc, err := unpack.OpenCache(context.Background(), filepath.Join(t.TempDir(), "unpack"), unpack.Options{Rootless: os.Geteuid() != 0})
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for i := range 4 {
		var out bytes.Buffer
		// A new step cache each time, so that every step runs; both
		// stages key their COPY through its file digests at once.
		cache, err := OpenCache(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		b := &Builder{Store: s, Executor: unshareExecutor{}, TempDir: filepath.Join(t.TempDir(), "tmp"), Progress: &out, Jobs: 1 + i%3, Unpack: uc, Cache: cache}
		res, err := b.Build(context.Background(), Request{ContextDir: ctxDir, Dockerfile: []byte(dockerfile), SourceDateEpoch: &epoch})
		if err != nil {
			t.Fatalf("build %d: %v\n%s", i, err, out.String())
		}
		if d := res.Manifest.Digest.String(); first == "" {
			first = d
		} else if d != first {
			t.Fatalf("build %d (%d jobs) gave %s, the first %s", i, b.Jobs, d, first)
		}
	}
}

// TestParallelFirstErrorWins: when a stage fails, the stage building
// beside it is cancelled and the build reports the failure, not the
// cancellation.
func TestParallelFirstErrorWins(t *testing.T) {
	s := baseStore(t)
	_, out, err := parallelBuild(t, s, 2, `FROM base:1 AS waits
RUN i=0; while [ $i -lt 600 ]; do i=$((i+1)); sleep 0.1; done
FROM base:1 AS fails
RUN echo broken >&2; exit 3
FROM base:1
COPY --from=waits /etc/passwd /a
COPY --from=fails /etc/passwd /b
`, nil)
	if err == nil {
		t.Fatalf("build succeeded\n%s", out)
	}
	if !strings.Contains(err.Error(), "exit code: 3") || !strings.Contains(err.Error(), "Dockerfile:4") {
		t.Errorf("error %q is not the failing stage's", err)
	}
}

// TestStageCycleAtRunTime: a cycle that shows only when a stage runs
// (through its base image's ONBUILD COPY --from) is an error, not a
// build that waits for ever.
func TestStageCycleAtRunTime(t *testing.T) {
	s := baseStore(t)
	parent := mustBuild(t, s, t.TempDir(), "FROM base:1\nONBUILD COPY --from=b /etc/passwd /x\n")
	if err := s.Set(context.Background(), "parent:1", parent.Manifest); err != nil {
		t.Fatal(err)
	}
	_, out, err := parallelBuild(t, s, 2, `FROM parent:1 AS a
FROM base:1 AS b
COPY --from=a /etc/passwd /y
`, nil)
	if err == nil || !strings.Contains(err.Error(), "stage a depends on itself") {
		t.Errorf("got %v\n%s", err, out)
	}
}

// TestParallelStagesShareBase: stages building at once FROM (and COPY
// --from) one image pull it once, even with --pull, and what one stage sets in its
// config does not reach the other.
func TestParallelStagesShareBase(t *testing.T) {
	s := baseStore(t)
	ctx := context.Background()
	base, err := s.Resolve(ctx, "base:1")
	if err != nil {
		t.Fatal(err)
	}
	var pulls atomic.Int32
	var out bytes.Buffer
	b := &Builder{Store: s, Executor: unshareExecutor{}, TempDir: filepath.Join(t.TempDir(), "tmp"), Progress: &out, Jobs: 3,
		Pull: func(ctx context.Context, ref string) error {
			pulls.Add(1)
			if ref != "remote:1" && ref != "base:1" {
				return fmt.Errorf("no image %s", ref)
			}
			return s.Set(ctx, ref, base.Descriptor)
		}}
	res, err := b.Build(ctx, Request{ContextDir: t.TempDir(), Dockerfile: []byte(`FROM remote:1 AS a
ENV ONLY_A=1
LABEL stage=a
RUN echo "a:$ONLY_B" > /a
FROM remote:1 AS b
ENV ONLY_B=1
RUN echo "b:$ONLY_A" > /b
FROM base:1
COPY --from=a /a /a
COPY --from=b /b /b
COPY --from=remote:1 /etc/group /group
`), PullAlways: true})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	if n := pulls.Load(); n != 2 {
		t.Errorf("%d pulls, want one of remote:1 and one of base:1\n%s", n, out.String())
	}
	if f := imageFile(t, s, res, "a"); f.data != "a:\n" {
		t.Errorf("a saw b's ENV: %q", f.data)
	}
	if f := imageFile(t, s, res, "b"); f.data != "b:\n" {
		t.Errorf("b saw a's ENV: %q", f.data)
	}
	if img := imageConfig(t, s, res); img.Config.Labels["stage"] != "" {
		t.Errorf("a's label reached the image: %v", img.Config.Labels)
	}
}
