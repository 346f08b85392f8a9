package depcheck

import (
	"os/exec"
	"strings"
	"testing"
)

// heavy are the module paths only the registry needs, whose package init
// every imgtool process would otherwise pay for (~12 ms, most of it the
// AWS SDK's endpoint tables).
var heavy = []string{
	"github.com/distribution/",
	"github.com/prometheus/",
	"go.opentelemetry.io/",
	"google.golang.org/grpc",
	"github.com/aws/",
	module + "registry",
}

func deps(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append(append([]string{"list", "-deps"}, args...), module+"cmd/imgtool")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// TestLeanBuildLeavesRegistryOut keeps the imgtool that `make build`
// produces (-tags imgtool_lean, see scripts/build.sh) free of the
// registry's dependencies, while the full build still has them.
func TestLeanBuildLeavesRegistryOut(t *testing.T) {
	has := func(pkgs []string, prefix string) bool {
		for _, p := range pkgs {
			if strings.HasPrefix(p, prefix) {
				return true
			}
		}
		return false
	}
	lean, full := deps(t, "-tags", "imgtool_lean"), deps(t)
	for _, h := range heavy {
		if has(lean, h) {
			t.Errorf("the lean imgtool (-tags imgtool_lean) depends on %s; only the registry commands may", h)
		}
		if !has(full, h) {
			t.Errorf("the full imgtool does not depend on %s: update this list", h)
		}
	}
}
