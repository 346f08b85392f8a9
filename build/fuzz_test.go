package build

import (
	"testing"

	"github.com/imgtool/imgtool/manifest"
)

// FuzzPlan feeds hostile Dockerfiles through parsing, ARG evaluation and
// stage pruning: errors are fine, panics and hangs are not.
func FuzzPlan(f *testing.F) {
	for _, seed := range []string{
		"FROM a\n",
		"ARG B=x\nFROM $B AS s\nFROM s\nCOPY --from=s / /\n",
		"FROM a AS x\nFROM x AS y\nFROM y AS x\n",
		"# escape=`\nFROM a\nRUN echo `\n  hi\n",
		"FROM a\nRUN <<EOF\necho\nEOF\n",
		"FROM a\nRUN --mount=type=cache,target=/c,from=0 true\n",
		"ARG A=${A:-${A}}\nFROM ${A:?unset}\n",
		"FROM a\nONBUILD ONBUILD RUN x\n",
		"FROM a\nCOPY --from=999999999999999999999 / /\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, df string) {
		p, err := parseDockerfile("Dockerfile", []byte(df))
		if err != nil {
			return
		}
		r := &buildRun{plan: p, req: Request{Platform: manifest.Native()}, usedArgs: map[string]bool{}}
		meta, err := r.metaArgs()
		if err != nil {
			return
		}
		for i := range p.stages {
			_, _ = p.needed(i, meta.expander(p.escape))
		}
	})
}
