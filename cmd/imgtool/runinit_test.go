package main_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// `imgtool run` starts the small container init that scripts/build.sh
// embeds, written once under the data root; when that file cannot be
// executed it falls back to starting imgtool itself.
func TestRunEmbeddedInit(t *testing.T) {
	for who, c := range runIdentities(t) {
		t.Run(who, func(t *testing.T) {
			importBusybox(t, c, "init:1")
			pid1Size := func() int64 {
				t.Helper()
				out := strings.TrimSpace(c.ok("run", "init:1", "/bin/busybox", "stat", "-L", "-c", "%s", "/proc/1/exe"))
				n, err := strconv.ParseInt(out, 10, 64)
				if err != nil {
					t.Fatalf("size of /proc/1/exe: %q", out)
				}
				return n
			}
			got := pid1Size()
			inits, _ := filepath.Glob(filepath.Join(c.root, "cache", "runner-init", "*"))
			if len(inits) != 1 {
				t.Fatalf("want one init under the data root, got %v", inits)
			}
			st, err := os.Stat(inits[0])
			must(t, err)
			self, err := os.Stat(binary)
			must(t, err)
			if got != st.Size() || st.Size() >= self.Size()/4 {
				t.Fatalf("PID 1 is %d bytes; the embedded init is %d, imgtool %d", got, st.Size(), self.Size())
			}
			// A published init that cannot be executed (as on a noexec
			// mount; here its bytes are not a program, at the size and
			// mode it is trusted by): imgtool itself is the init. A copy
			// whose mode changed would be written again instead.
			must(t, os.WriteFile(inits[0], make([]byte, st.Size()), 0o755))
			if got := pid1Size(); got != self.Size() {
				t.Fatalf("with the init not executable, PID 1 is %d bytes; want imgtool's %d", got, self.Size())
			}
		})
	}
}
