package unpack_test

import (
	"os"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/internal/testnobody"
)

// asEnv marks a test binary that TestAsNobody started.
const asEnv = "IMGTOOL_UNPACK_TEST_UID"

// TestAsNobody runs the corpus and the semantic cases again as uid 65534
// when the tests run as root (as CI does), so that the unprivileged paths
// (owners in the xattr, skipped device nodes, no CAP_DAC_OVERRIDE) are
// taken for real. It re-executes a copy of the test binary with dropped
// credentials.
func TestAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Logf("running as uid %d (%s=%q): the whole suite already takes the unprivileged paths", os.Geteuid(), asEnv, os.Getenv(asEnv))
		return
	}
	const id = testnobody.UID
	out, err := testnobody.Run(t, []string{asEnv + "=65534"},
		"-test.run", "^(TestHostile|TestHostileWalk|TestWalkMatchesOpenat2|TestSemantics|TestCompressions|TestCache.*|TestClone|TestBlobVerifiedOnce|TestWriteFails|TestWarningsInTarOrder|TestResolveUnderRenames|TestAsNobody)$",
		"-test.count=1", "-test.v", "-test.timeout=5m")
	var failed []string
	for _, line := range strings.Split(out, "\n") {
		outcome := strings.Contains(line, "OUTCOME")
		if outcome && testing.Verbose() {
			t.Log(line)
		}
		if !outcome && (strings.Contains(line, "--- FAIL") || strings.Contains(line, "_test.go:")) {
			failed = append(failed, line)
		}
	}
	if err != nil {
		if len(failed) == 0 {
			failed = strings.Split(out, "\n")
		}
		t.Errorf("the suite as uid %d failed (%v):\n%s", id, err, strings.Join(failed, "\n"))
	}
	for _, name := range []string{"TestHostile/", "TestHostileWalk/", "TestCacheParentUnchanged", "TestCacheKilledBuild", "TestCacheBootRebuild", "TestCacheBootPrune", "TestCacheBootRaceProcesses", "TestClone", "TestWriteFails", "TestWarningsInTarOrder", "TestBlobVerifiedOnce"} {
		if !strings.Contains(out, "--- PASS: "+name) && !strings.Contains(out, "--- FAIL: "+name) {
			t.Errorf("the suite as uid %d did not run %s:\n%s", id, name, out)
		}
	}
}
