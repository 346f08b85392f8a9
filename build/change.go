package build

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// changeable lists the instructions ApplyChanges accepts: those that only
// set config fields that ocispec.ImageConfig has. HEALTHCHECK, ONBUILD and
// SHELL are Docker-only fields that an OCI config cannot hold, and RUN,
// COPY and the like need a build.
var changeable = []string{"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

// ApplyChanges applies Dockerfile instructions to cfg, one instruction per
// change, in order, as `docker import --change` and `docker commit
// --change` do: CMD, ENTRYPOINT (JSON exec form, or shell form run by
// /bin/sh -c), ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME and WORKDIR.
// Variables ($VAR, ${VAR:-default}) in ENV, LABEL, EXPOSE, USER, VOLUME,
// WORKDIR and STOPSIGNAL expand against the image's environment as it
// stands before that instruction, as in a Dockerfile; CMD and ENTRYPOINT are
// kept verbatim. As in a Dockerfile, ENTRYPOINT clears a CMD that did not
// come from an earlier change in the same call. cfg is not modified.
//
// Instructions are parsed with BuildKit's Dockerfile parser, so quoting,
// escapes, line continuations and JSON forms mean exactly what they mean in
// a Dockerfile. Like Docker, an argument that is not valid JSON (such as
// CMD ["sh") is taken as shell form.
func ApplyChanges(cfg ocispec.ImageConfig, changes []string) (ocispec.ImageConfig, error) {
	out := cloneImageConfig(cfg)
	cmdSet := false
	for _, change := range changes {
		if err := applyChange(&out, change, &cmdSet); err != nil {
			return ocispec.ImageConfig{}, fmt.Errorf("apply change %q: %w", change, err)
		}
	}
	return out, nil
}

func applyChange(cfg *ocispec.ImageConfig, change string, cmdSet *bool) error {
	if blank(change) {
		// Said here because BuildKit's message for it speaks of a file.
		return errors.New(`no instruction; give one such as CMD ["/bin/sh"]`)
	}
	res, err := parser.Parse(strings.NewReader(change))
	if err != nil {
		return err
	}
	if n := len(res.AST.Children); n != 1 {
		return fmt.Errorf("%d instructions; give each its own change", n)
	}
	node := res.AST.Children[0]
	// Checked before BuildKit parses the arguments, so that FROM or RUN get
	// this message rather than one about their own syntax.
	if name := strings.ToUpper(node.Value); !slices.Contains(changeable, name) {
		return fmt.Errorf("%s cannot be applied as a change; use one of %s", name, strings.Join(changeable, ", "))
	}
	cmd, err := instructions.ParseCommand(node)
	if err != nil {
		return err
	}
	lex := shell.NewLex(res.EscapeToken)
	env := shell.EnvsFromSlice(cfg.Env)
	expand := func(word string) (string, error) {
		s, _, err := lex.ProcessWord(word, env)
		return s, err
	}
	if e, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		if err := e.Expand(expand); err != nil {
			return fmt.Errorf("expand variables: %w", err)
		}
	}
	switch c := cmd.(type) {
	case *instructions.CmdCommand:
		if cfg.Cmd, err = commandLine(c.ShellDependantCmdLine); err != nil {
			return err
		}
		*cmdSet = true
	case *instructions.EntrypointCommand:
		if cfg.Entrypoint, err = commandLine(c.ShellDependantCmdLine); err != nil {
			return err
		}
		if !*cmdSet {
			cfg.Cmd = nil
		}
	case *instructions.WorkdirCommand:
		if c.Path == "" {
			return errors.New("WORKDIR path is empty")
		}
		// A relative WORKDIR is relative to the current one, as in a Dockerfile.
		cfg.WorkingDir = path.Join("/", cfg.WorkingDir, c.Path)
		if path.IsAbs(c.Path) {
			cfg.WorkingDir = path.Clean(c.Path)
		}
	default:
		handled, err := applyConfig(cfg, c, func(w string) ([]string, error) { return lex.ProcessWords(w, env) })
		if !handled {
			return fmt.Errorf("%s cannot be applied as a change", c.Name())
		}
		return err
	}
	return nil
}

// applyConfig applies the instructions whose effect on the config a
// Dockerfile and a --change share (ENV, LABEL, EXPOSE, USER, VOLUME,
// STOPSIGNAL), with their validation; words expands EXPOSE's arguments.
// It reports false for any other instruction.
func applyConfig(cfg *ocispec.ImageConfig, cmd instructions.Command, words func(string) ([]string, error)) (bool, error) {
	switch c := cmd.(type) {
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
		}
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
		}
	case *instructions.ExposeCommand:
		return true, expose(cfg, c.Ports, words)
	case *instructions.UserCommand:
		cfg.User = c.User
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return true, errors.New("VOLUME path is empty")
			}
			cfg.Volumes[v] = struct{}{}
		}
	case *instructions.StopSignalCommand:
		if !validSignal(c.Signal) {
			return true, fmt.Errorf("STOPSIGNAL %q is not a signal; give a name such as SIGTERM or a number from 1 to 64", c.Signal)
		}
		cfg.StopSignal = c.Signal
	default:
		return false, nil
	}
	return true, nil
}

// commandLine is the argv a CMD or ENTRYPOINT stands for. A JSON [] clears
// the field, as in a Dockerfile; a shell form with no command is refused,
// where Docker would record a `/bin/sh -c ""` that does nothing.
func commandLine(c instructions.ShellDependantCmdLine) ([]string, error) {
	if !c.PrependShell {
		return c.CmdLine, nil
	}
	line := strings.Join(c.CmdLine, " ")
	if strings.TrimSpace(line) == "" {
		return nil, errors.New(`no command; give one, or [] to clear it`)
	}
	return append(slices.Clone(defaultShell), line), nil
}

// blank reports whether s holds no instruction: only blank lines and
// comments.
func blank(s string) bool {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// expose adds ports written PORT, PORT/PROTO or FIRST-LAST[/PROTO] (PROTO
// tcp, udp or sctp, tcp by default), one "port/proto" key per port, as
// Docker records them. The host-side forms Docker tolerates here
// (IP:HOST:CONTAINER) are refused: they mean nothing in an image.
func expose(cfg *ocispec.ImageConfig, specs []string, words func(string) ([]string, error)) error {
	var ports []string
	for _, s := range specs {
		ws, err := words(s)
		if err != nil {
			return fmt.Errorf("expand variables: %w", err)
		}
		for _, w := range ws {
			ps, err := portKeys(w)
			if err != nil {
				return err
			}
			ports = append(ports, ps...)
		}
	}
	if cfg.ExposedPorts == nil {
		cfg.ExposedPorts = map[string]struct{}{}
	}
	for _, p := range ports {
		cfg.ExposedPorts[p] = struct{}{}
	}
	return nil
}

func portKeys(spec string) ([]string, error) {
	bad := func(why string) error {
		return fmt.Errorf("EXPOSE %q: %s; write PORT, PORT/PROTO or FIRST-LAST/PROTO with PROTO tcp, udp or sctp", spec, why)
	}
	ports, proto, _ := strings.Cut(spec, "/")
	proto = strings.ToLower(proto)
	switch proto {
	case "":
		proto = "tcp"
	case "tcp", "udp", "sctp":
	default:
		return nil, bad("unknown protocol " + proto)
	}
	first, last, isRange := strings.Cut(ports, "-")
	lo, err := portNumber(first)
	if err != nil {
		return nil, bad(err.Error())
	}
	hi := lo
	if isRange {
		if hi, err = portNumber(last); err != nil {
			return nil, bad(err.Error())
		}
		if hi < lo {
			return nil, bad("range ends before it starts")
		}
	}
	out := make([]string, 0, hi-lo+1)
	for p := lo; p <= hi; p++ {
		out = append(out, strconv.Itoa(p)+"/"+proto)
	}
	return out, nil
}

func portNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("%q is not a port number from 1 to 65535", s)
	}
	return n, nil
}

// linuxSignals are the names moby's signal.ParseSignal knows on Linux,
// without the SIG prefix.
var linuxSignals = strings.Fields(`ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF
	PWR QUIT SEGV STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ RTMIN RTMAX`)

// validSignal reports whether s names a signal as runtimes parse it
// (SIGTERM, TERM, 15, RTMIN+3), so that a typo fails at import rather than
// when the container is stopped.
func validSignal(s string) bool {
	if n, err := strconv.Atoi(s); err == nil {
		return n >= 1 && n <= 64 && !strings.HasPrefix(s, "+")
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	for _, rt := range []struct {
		prefix string
		max    int
	}{{"RTMIN+", 15}, {"RTMAX-", 14}} {
		if off, ok := strings.CutPrefix(name, rt.prefix); ok {
			n, err := strconv.Atoi(off)
			return err == nil && n >= 1 && n <= rt.max && !strings.HasPrefix(off, "+")
		}
	}
	return slices.Contains(linuxSignals, name)
}

// cloneImageConfig copies every slice and map of c, so that changes to the
// copy never show through the caller's config.
func cloneImageConfig(c ocispec.ImageConfig) ocispec.ImageConfig {
	c.Env = slices.Clone(c.Env)
	c.Entrypoint = slices.Clone(c.Entrypoint)
	c.Cmd = slices.Clone(c.Cmd)
	c.ExposedPorts = maps.Clone(c.ExposedPorts)
	c.Volumes = maps.Clone(c.Volumes)
	c.Labels = maps.Clone(c.Labels)
	return c
}
