package build

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// plan is a parsed Dockerfile: its stages in order and the ARGs declared
// before the first FROM.
type plan struct {
	file     string // the Dockerfile's name, for messages
	escape   rune
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
}

// parseDockerfile parses a Dockerfile with BuildKit's parser and
// instruction packages. Errors name file:line and the instruction.
func parseDockerfile(name string, data []byte) (*plan, error) {
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, locate(name, err, "")
	}
	p := &plan{file: name, escape: res.EscapeToken}
	// The loop of instructions.Parse, kept here so that every error can
	// name the instruction it is about.
	for _, n := range res.AST.Children {
		cmd, err := instructions.ParseInstruction(n)
		if err != nil {
			return nil, nodeError(name, n, err)
		}
		if len(p.stages) == 0 {
			if a, ok := cmd.(*instructions.ArgCommand); ok {
				p.metaArgs = append(p.metaArgs, *a)
				continue
			}
		}
		switch c := cmd.(type) {
		case *instructions.Stage:
			p.stages = append(p.stages, *c)
		case instructions.Command:
			if len(p.stages) == 0 {
				return nil, nodeError(name, n, errors.New("the first instruction must be FROM (only ARG may come before it)"))
			}
			p.stages[len(p.stages)-1].AddCommand(c)
		default:
			return nil, nodeError(name, n, fmt.Errorf("%T is not an instruction", cmd))
		}
	}
	if len(p.stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM instruction; a Dockerfile starts with FROM IMAGE (or FROM scratch)", name)
	}
	return p, nil
}

// nodeError says where in the Dockerfile an instruction failed to parse.
func nodeError(file string, n *parser.Node, err error) error {
	return fmt.Errorf("%s:%d: %s: %w", file, n.StartLine, firstLine(n.Original), unwrapParse(err))
}

// unwrapParse drops BuildKit's own "dockerfile parse error on line N"
// wrapping, since nodeError says where.
func unwrapParse(err error) error {
	var le *parser.LocationError
	if errors.As(err, &le) && le.Unwrap() != nil {
		return le.Unwrap()
	}
	return err
}

// locate formats an error that carries a BuildKit location as file:line.
func locate(file string, err error, what string) error {
	var le *parser.LocationError
	line := 0
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		line = le.Locations[0][0].Start.Line
		err = le.Unwrap()
	}
	prefix := file
	if line > 0 {
		prefix += ":" + strconv.Itoa(line)
	}
	if what != "" {
		prefix += ": " + what
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// firstLine is an instruction's first line, for messages about multi-line
// instructions.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// cmdLine is where a command starts in the Dockerfile.
func cmdLine(c instructions.Command) int {
	if l, ok := c.(interface{ Location() []parser.Range }); ok {
		if r := l.Location(); len(r) > 0 {
			return r[0].Start.Line
		}
	}
	return 0
}

// stageIndex finds the stage a FROM or --from names: an earlier stage's
// name (case-insensitively, as docker does) or its number. before bounds
// the search to stages defined earlier.
func (p *plan) stageIndex(ref string, before int) (int, bool) {
	if i, ok := instructions.HasStage(p.stages[:before], ref); ok {
		return i, true
	}
	if n, err := strconv.Atoi(ref); err == nil && n >= 0 && n < before {
		return n, true
	}
	return -1, false
}

// target returns the index of the stage to build: the one named (or
// numbered) target, or the last.
func (p *plan) target(name string) (int, error) {
	if name == "" {
		return len(p.stages) - 1, nil
	}
	if i, ok := p.stageIndex(name, len(p.stages)); ok {
		return i, nil
	}
	var names []string
	for _, s := range p.stages {
		if s.Name != "" {
			names = append(names, s.Name)
		}
	}
	return -1, fmt.Errorf("target stage %q not found in %s (stages: %s)", name, p.file, strings.Join(names, ", "))
}

// text is an instruction as written, for progress, errors and history.
func text(c instructions.Command) string {
	if s, ok := c.(fmt.Stringer); ok {
		return s.String()
	}
	return c.Name()
}
