package build

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imgtool/imgtool/manifest"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// TestNeededStages: the target's stages, through FROM, COPY --from and
// RUN --mount from=, by name or number, with ARGs before FROM expanded;
// nothing else.
func TestNeededStages(t *testing.T) {
	for _, tc := range []struct {
		name, df, target string
		want             []int
	}{
		{"last stage alone", "FROM a AS x\nFROM b AS y\n", "", []int{1}},
		{"FROM a stage", "FROM a AS x\nFROM x AS y\nFROM c\n", "y", []int{0, 1}},
		{"COPY --from by name and number", "FROM a AS x\nFROM a AS y\nFROM a AS z\nFROM scratch\nCOPY --from=x /a /\nCOPY --from=2 /b /\n", "", []int{0, 2, 3}},
		{"RUN --mount from", "FROM a AS tools\nFROM a\nRUN --mount=from=tools,target=/t true\n", "", []int{0, 1}},
		{"ARG in FROM", "ARG BASE=x\nFROM a AS x\nFROM a AS other\nFROM ${BASE}\n", "", []int{0, 2}},
		{"target by number", "FROM a\nFROM b\n", "0", []int{0}},
		{"chain", "FROM a AS s0\nFROM s0 AS s1\nFROM s1 AS s2\nFROM a AS unused\nFROM s2\n", "", []int{0, 1, 2, 4}},
		{"case-insensitive names", "FROM a AS Build\nFROM scratch\nCOPY --from=BUILD /x /\n", "", []int{0, 1}},
		{"an image, not a stage", "FROM a AS x\nFROM scratch\nCOPY --from=alpine:3 /x /\n", "", []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseDockerfile("Dockerfile", []byte(tc.df))
			if err != nil {
				t.Fatal(err)
			}
			r := &buildRun{plan: p, req: Request{Platform: manifest.Native()}, usedArgs: map[string]bool{}}
			meta, err := r.metaArgs()
			if err != nil {
				t.Fatal(err)
			}
			target, err := p.target(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.needed(target, meta.expander(p.escape))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("needed %v, want %v", got, tc.want)
			}
		})
	}
}

// TestParseErrors: what is wrong, where.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ df, want string }{
		{"", "Dockerfile: file with no instructions"},
		{"# just a comment\n", "file with no instructions"},
		{"RUN true\n", "Dockerfile:1: RUN true: the first instruction must be FROM"},
		{"FROM a\nBOGUS x\n", "Dockerfile:2: BOGUS x: unknown instruction: BOGUS"},
		{"FROM a AS 1bad\n", "Dockerfile:1: FROM a AS 1bad: invalid name for build stage"},
		{"FROM a\nCOPY --nope x y\n", "Dockerfile:2: COPY --nope x y: unknown flag: --nope"},
		{"FROM a\nRUN echo \\\n  continued\nEXPOSE\n", "Dockerfile:4: EXPOSE"},
	} {
		_, err := parseDockerfile("Dockerfile", []byte(tc.df))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.df, err, tc.want)
		}
	}
}

// TestArgScopes: --build-arg beats a default; a stage ARG without a
// default takes the global one; platform ARGs are predefined; ARG values
// expand earlier ones.
func TestArgScopes(t *testing.T) {
	df := "ARG A=global-a\nARG B\nARG C=${A}-c\nFROM x\nARG A\nARG B=stage-b\nARG TARGETARCH\nARG D=$A/$B\nARG UNSET\nARG SOURCE_DATE_EPOCH\n"
	for _, tc := range []struct {
		args map[string]string
		want []string
	}{
		{nil, []string{"A=global-a", "B=stage-b", "TARGETARCH=" + manifest.Native().Architecture, "D=global-a/stage-b", "SOURCE_DATE_EPOCH=1700000000"}},
		{map[string]string{"A": "cli", "B": "cli-b"}, []string{"A=cli", "B=cli-b", "TARGETARCH=" + manifest.Native().Architecture, "D=cli/cli-b", "SOURCE_DATE_EPOCH=1700000000"}},
	} {
		p, err := parseDockerfile("Dockerfile", []byte(df)) // expansion rewrites the instructions
		if err != nil {
			t.Fatal(err)
		}
		epoch := time.Unix(1700000000, 0)
		r := &buildRun{plan: p, req: Request{Platform: manifest.Native(), BuildArgs: tc.args, SourceDateEpoch: &epoch}, usedArgs: map[string]bool{}}
		meta, err := r.metaArgs()
		if err != nil {
			t.Fatal(err)
		}
		r.meta = meta
		if c, _ := meta.get("C"); c != "global-a-c" && tc.args == nil {
			t.Errorf("global C = %q", c)
		}
		s := &stageRun{r: r, args: newArgScope(), lex: shell.NewLex(p.escape)}
		for _, cmd := range p.stages[0].Commands {
			if err := s.expand(cmd); err != nil {
				t.Fatal(err)
			}
			if err := s.dispatch(context.Background(), cmd, nil); err != nil {
				t.Fatal(err)
			}
		}
		if got := s.args.env(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("build args %v: stage env %v, want %v", tc.args, got, tc.want)
		}
	}
}
