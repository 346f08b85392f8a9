// Package depcheck holds the test that keeps imports flowing one way
// between imgtool's packages, as ../shared/DESIGN.md lays them out
// (after go-containerregistry's internal/depcheck).
package depcheck

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/imgtool/imgtool/"

// allowed lists, for each library package, the imgtool packages it may
// import. Packages not listed may not be imported by any library package
// listed here; cmd/imgtool may import everything and nothing imports it.
var allowed = map[string][]string{
	"manifest":        {},
	"runner":          {},
	"layer":           {"manifest", "internal/rootlesscontainers", "internal/compression", "internal/xattr"},
	"store":           {"manifest", "internal/flock", "internal/atomicfile"},
	"store/transport": {"manifest", "store", "internal/atomicfile"},
	"unpack":          {"manifest", "store", "internal/rootlesscontainers", "internal/compression", "internal/flock", "internal/xattr"},
	"build":           {"manifest", "layer", "store", "store/transport", "unpack", "runner", "internal/rootlesscontainers", "internal/compression", "internal/flock", "internal/atomicfile"},
	"registry":        {"manifest", "internal/bundlename", "internal/atomicfile"},
}

// forbiddenStd lists standard packages a package must not use: manifest
// does no I/O.
var forbiddenStd = map[string][]string{
	"manifest": {"os", "net", "net/http", "io/ioutil"},
}

func TestImportsFlowOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		for _, imp := range fields[1:] {
			if imp == module+"cmd/imgtool" {
				t.Errorf("%s imports cmd/imgtool", pkg)
			}
			for _, bad := range forbiddenStd[pkg] {
				if imp == bad {
					t.Errorf("%s imports %s, but must do no I/O", pkg, imp)
				}
			}
			rules, ok := allowed[pkg]
			if !ok || !strings.HasPrefix(imp, module) {
				continue
			}
			target := strings.TrimPrefix(imp, module)
			permitted := false
			for _, a := range rules {
				permitted = permitted || a == target
			}
			if !permitted {
				t.Errorf("%s imports %s; DESIGN.md allows only %v", pkg, target, rules)
			}
		}
	}
}
