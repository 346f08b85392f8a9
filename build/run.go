package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/imgtool/imgtool/layer"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// run executes a RUN through the Executor and makes a layer of what it
// changed: a snapshot of the tree before, a diff after.
func (s *stageRun) run(ctx context.Context, c *instructions.RunCommand, st *step) error {
	if s.r.b.Executor == nil {
		return errNoExecutor
	}
	if ok, err := s.overlayRun(ctx, c, st); ok || err != nil {
		return err
	}
	if _, err := s.tree(ctx); err != nil {
		return err
	}
	m := newMounter(s)
	defer m.cleanup()
	spec := RunSpec{Rootfs: s.rootfs.root, Env: s.runEnv(), User: s.img.Config.User, Stdin: strings.NewReader("")}
	var err error
	if spec.Args, err = s.runArgs(c, m); err != nil {
		return err
	}
	snap, err := layer.Take(s.rootfs.root)
	if err != nil {
		return err
	}
	// What the step prepares (working directory, mount points) is made
	// after the snapshot, so that a working directory it creates is in
	// its layer, as in docker, and mount points are seen and removed.
	if spec.Dir, err = s.workingDir(); err != nil {
		return err
	}
	for _, mnt := range instructions.GetMounts(c) {
		if err := m.add(ctx, mnt, &spec.Env); err != nil {
			return err
		}
	}
	spec.Mounts = m.mounts
	if spec.Network = instructions.GetNetwork(c); spec.Network == instructions.NetworkDefault {
		spec.Network = ""
	}
	if err := s.execute(ctx, spec, st); err != nil {
		return err
	}
	if err := m.removeTargets(); err != nil {
		return err
	}
	changes, err := changesSince(snap)
	if err != nil {
		return err
	}
	return s.writeLayer(ctx, s.rootfs.root, changes, c.String())
}

// workingDir makes the stage's working directory, owned by USER, and
// returns it.
func (s *stageRun) workingDir() (string, error) {
	dir := s.img.Config.WorkingDir
	if dir == "" {
		dir = "/"
	}
	o, err := s.userOwner()
	if err != nil {
		return "", err
	}
	w := newFSWriter(s.rootfs, s.r.rootless)
	_, err = w.mkdirAll(dir, o)
	if rerr := w.restoreModes(); err == nil {
		err = rerr
	}
	if err != nil {
		return "", fmt.Errorf("make working directory %s: %w", dir, err)
	}
	return dir, nil
}

// execute runs spec with its output streamed under step st; a failure
// names the command, its exit status and the tail of its output.
func (s *stageRun) execute(ctx context.Context, spec RunSpec, st *step) error {
	out := st.output()
	spec.Stdout, spec.Stderr = out, out
	code, err := s.r.b.Executor.Run(ctx, spec)
	tail := out.flush()
	cmdline := strings.Join(spec.Args, " ")
	if err != nil {
		return fmt.Errorf("run %q: %w", cmdline, err)
	}
	if code != 0 {
		msg := fmt.Sprintf("process %q did not complete successfully: exit code: %d", cmdline, code)
		if len(tail) > 0 {
			msg += fmt.Sprintf("; its output ended with %q", strings.Join(tail, "\n"))
		}
		return errors.New(msg)
	}
	return nil
}

// changesSince lists what changed in the tree since snap.
func changesSince(snap *layer.Snapshot) ([]layer.Change, error) {
	ch, err := layer.Diff(snap, "")
	if err != nil {
		return nil, err
	}
	return collect(ch)
}

// collect reads ch to its end.
func collect(ch layer.Changes) ([]layer.Change, error) {
	var changes []layer.Change
	for {
		c, err := ch.Next()
		if err == io.EOF {
			return changes, nil
		}
		if err != nil {
			return nil, err
		}
		changes = append(changes, c)
	}
}

// runEnv is a RUN's environment: the image's ENV, the stage's ARGs that
// ENV does not override, the proxy build args given, and a PATH.
func (s *stageRun) runEnv() []string {
	var env []string
	seen := map[string]bool{}
	add := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if !seen[k] {
			seen[k] = true
			env = append(env, kv)
		}
	}
	for _, kv := range s.img.Config.Env {
		add(kv)
	}
	for _, kv := range s.args.env() {
		add(kv)
	}
	var proxies []string
	for k, v := range s.r.req.BuildArgs {
		if proxyArgs[k] {
			proxies = append(proxies, k+"="+v)
		}
	}
	slices.Sort(proxies)
	for _, kv := range proxies {
		add(kv)
	}
	add(defaultPath)
	return env
}

// runArgs is the argv of a RUN, with heredocs handled as BuildKit does:
// one heredoc is the shell's script (or, starting with #!, a file run
// directly); several are handed to the shell as written.
func (s *stageRun) runArgs(c *instructions.RunCommand, m *mounter) ([]string, error) {
	args := slices.Clone(c.CmdLine)
	if len(c.Files) > 0 {
		if len(args) != 1 || !c.PrependShell {
			return nil, fmt.Errorf("heredoc in an exec-form RUN")
		}
		if parser.MustParseHeredoc(args[0]) != nil {
			data := c.Files[0].Data
			if c.Files[0].Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				p, err := m.script(c.Files[0].Name, data)
				if err != nil {
					return nil, err
				}
				return []string{p}, nil
			}
			args = []string{data}
		} else {
			var b strings.Builder
			b.WriteString(args[0])
			for _, f := range c.Files {
				b.WriteString("\n" + f.Data + f.Name)
			}
			args = []string{b.String()}
		}
	}
	if c.PrependShell {
		return append(s.shell(), strings.Join(args, " ")), nil
	}
	return args, nil
}

// cacheKey names a cache mount's directory: its id made safe as one path
// component.
func cacheKey(id string) string {
	var b strings.Builder
	for _, r := range id {
		if r == '/' || r == 0 || r == '.' && b.Len() == 0 {
			b.WriteString("_" + strconv.Itoa(int(r)) + "_")
			continue
		}
		b.WriteRune(r)
	}
	return path.Clean("c-" + b.String())
}
