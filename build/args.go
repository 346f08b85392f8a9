package build

import (
	"maps"
	"slices"
	"strconv"

	"github.com/imgtool/imgtool/manifest"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// proxyArgs are the build args docker predefines: RUN sees them when given
// with --build-arg, without an ARG, and they never reach the image.
var proxyArgs = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true, "HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true, "NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

// builtinArgs are the ARGs BuildKit defines in the global scope: the
// target and build platforms (the same here: imgtool builds natively),
// and SOURCE_DATE_EPOCH when the build has one.
func (r *buildRun) builtinArgs() map[string]string {
	p := r.req.Platform
	args := map[string]string{
		"TARGETPLATFORM": manifest.FormatPlatform(p), "TARGETOS": p.OS, "TARGETARCH": p.Architecture, "TARGETVARIANT": p.Variant,
		"BUILDPLATFORM": manifest.FormatPlatform(p), "BUILDOS": p.OS, "BUILDARCH": p.Architecture, "BUILDVARIANT": p.Variant,
	}
	if e := r.req.SourceDateEpoch; e != nil {
		args["SOURCE_DATE_EPOCH"] = strconv.FormatInt(e.Unix(), 10)
	}
	return args
}

// argScope holds declared ARGs in declaration order; a nil value is an
// ARG declared without one (it expands to nothing and RUN does not see it).
type argScope struct {
	names []string
	vals  map[string]*string
}

func newArgScope() *argScope { return &argScope{vals: map[string]*string{}} }

func (a *argScope) set(k string, v *string) {
	if _, ok := a.vals[k]; !ok {
		a.names = append(a.names, k)
	}
	a.vals[k] = v
}

func (a *argScope) get(k string) (string, bool) {
	v, ok := a.vals[k]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// env lists the ARGs that have values as KEY=VALUE.
func (a *argScope) env() []string {
	var out []string
	for _, k := range a.names {
		if v := a.vals[k]; v != nil {
			out = append(out, k+"="+*v)
		}
	}
	return out
}

// expander expands words against the scope alone (FROM lines).
func (a *argScope) expander(escape rune) func(string) (string, error) {
	lex := shell.NewLex(escape)
	env := shell.EnvsFromSlice(a.env())
	return func(w string) (string, error) {
		s, _, err := lex.ProcessWord(w, env)
		return s, err
	}
}

// declare applies one ARG instruction to scope: each name takes its
// --build-arg value, else its default (already expanded), else the value
// of the same ARG in the global scope (ARG before FROM), else that of a
// built-in ARG.
func (r *buildRun) declare(scope *argScope, c *instructions.ArgCommand, global *argScope) {
	plat := r.builtinArgs()
	for _, kv := range c.Args {
		v := kv.Value
		if ba, ok := r.req.BuildArgs[kv.Key]; ok {
			r.mu.Lock()
			r.usedArgs[kv.Key] = true
			r.mu.Unlock()
			v = &ba
		} else if v == nil && global != nil {
			if gv, ok := global.get(kv.Key); ok {
				v = &gv
			}
		}
		if pv, ok := plat[kv.Key]; ok && v == nil {
			v = &pv
		}
		scope.set(kv.Key, v)
	}
}

// metaArgs evaluates the ARGs before the first FROM, which FROM lines and
// stage ARGs without a default see.
func (r *buildRun) metaArgs() (*argScope, error) {
	scope := newArgScope()
	builtin := r.builtinArgs()
	for _, k := range slices.Sorted(maps.Keys(builtin)) {
		v := builtin[k]
		scope.set(k, &v)
	}
	for i := range r.plan.metaArgs {
		c := &r.plan.metaArgs[i]
		if err := c.Expand(scope.expander(r.plan.escape)); err != nil {
			return nil, locate(r.plan.file, err, firstLine(c.String()))
		}
		r.declare(scope, c, nil)
	}
	return scope, nil
}

// needed returns the stages the target needs (its base stages and those
// COPY --from and RUN --mount from= name), in an order that builds each
// after what it needs. Stages nothing needs are not built.
func (p *plan) needed(target int, expand func(string) (string, error)) ([]int, error) {
	var order []int
	state := make([]int, len(p.stages)) // 0 new, 1 visiting, 2 done
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case 1:
			return errCycle(p, i)
		case 2:
			return nil
		}
		state[i] = 1
		for _, d := range p.deps(i, expand) {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[i] = 2
		order = append(order, i)
		return nil
	}
	if err := visit(target); err != nil {
		return nil, err
	}
	return order, nil
}

// deps lists the stages stage i refers to. References that use variables
// of the stage itself are resolved when the stage runs.
func (p *plan) deps(i int, expand func(string) (string, error)) []int {
	var out []int
	ref := func(name string, before int) {
		if name == "" {
			return
		}
		if e, err := expand(name); err == nil {
			name = e
		}
		if j, ok := p.stageIndex(name, before); ok && j != i {
			out = append(out, j)
		}
	}
	ref(p.stages[i].BaseName, i)
	for _, c := range p.stages[i].Commands {
		switch c := c.(type) {
		case *instructions.CopyCommand:
			ref(c.From, len(p.stages))
		case *instructions.RunCommand:
			for _, m := range instructions.GetMounts(c) {
				ref(m.From, len(p.stages))
			}
		}
	}
	return out
}
