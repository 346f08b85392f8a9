package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// parallelDockerfile's stages a and b each leave a marker in a cache
// mount they share and wait, a bounded time, for the other's: the build
// succeeds only when their RUN steps run at the same time.
const parallelDockerfile = `FROM base:1 AS a
RUN --mount=type=cache,id=meet,target=/meet touch /meet/a; i=0; while [ ! -e /meet/b ]; do i=$((i+1)); [ $i -le 600 ] || { echo a waited for b in vain; exit 7; }; sleep 0.1; done; echo a > /a

FROM base:1 AS b
RUN --mount=type=cache,id=meet,target=/meet touch /meet/b; i=0; while [ ! -e /meet/a ]; do i=$((i+1)); [ $i -le 600 ] || { echo b waited for a in vain; exit 7; }; sleep 0.1; done; echo b > /b

FROM base:1
COPY --from=a /a /a
COPY --from=b /b /b
`

// TestBuildParallelStages: imgtool build runs independent stages at once
// (as root and as uid 65534), their progress stays whole "#N" lines, and
// under SOURCE_DATE_EPOCH every build gives the same image.
func TestBuildParallelStages(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root to build as root and as uid 65534 and compare: run the suite as root (CI does: sudo make test)")
	}
	c := newCLI(t)
	busyboxBase(t, c)
	base := nobodyDir(t)
	dir := writeContext(t, filepath.Join(base, "ctx"), map[string]string{"Dockerfile": parallelDockerfile})
	chownTree(t, base, nobody)
	const epoch = "SOURCE_DATE_EPOCH=1700000000"
	c.env = append(c.env, epoch)
	r := c.run(nil, "build", "-t", "par:1", dir)
	if r.code != 0 {
		t.Fatalf("build: %d\n%s", r.code, r.stderr)
	}
	first := strings.TrimSpace(r.stdout)
	line := regexp.MustCompile(`^#\d+ `)
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if !line.MatchString(l) {
			t.Errorf("progress line %q is not a whole step line:\n%s", l, r.stderr)
		}
	}
	if files := exportFiles(t, c, "par:1"); files["a"] == nil || files["a"].Linkname != "a\n" || files["b"] == nil || files["b"].Linkname != "b\n" {
		t.Errorf("files: a %+v, b %+v", files["a"], files["b"])
	}
	// --no-cache: both RUN steps run again, at once again.
	if d := strings.TrimSpace(c.ok("build", "--no-cache", "-t", "par:2", dir)); d != first {
		t.Errorf("second build: %s, first %s", d, first)
	}

	got, _ := buildAsNobody(t, c, base, "nobody:1", dir, epoch)
	if got != first {
		t.Errorf("built as uid %d: %s; as root: %s", nobody, got, first)
	}
}
