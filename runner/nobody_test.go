package runner_test

import (
	"os"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/internal/testnobody"
)

// TestAsNobody runs the whole suite again as uid 65534 when the tests run
// as root (as CI does), so the rootless paths (the caller alone mapped to
// root, overlay in a user namespace, setgroups denied) are taken for real.
func TestAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Logf("running as uid %d: the whole suite already takes the rootless paths", os.Geteuid())
		return
	}
	const id = testnobody.UID
	out, err := testnobody.Run(t, nil, "-test.run", "^Test", "-test.skip", "^TestAsNobody$", "-test.count=1", "-test.v", "-test.timeout=5m")
	if testing.Verbose() {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "OUTCOME") || strings.HasPrefix(strings.TrimSpace(line), "---") {
				t.Log(line)
			}
		}
	}
	if err != nil {
		t.Errorf("the suite as uid %d failed (%v):\n%s", id, err, out)
	}
	if !strings.Contains(out, "--- PASS: TestEphemeralRootfs") {
		t.Errorf("the suite as uid %d did not run:\n%s", id, out)
	}
}
