package build

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/imgtool/imgtool/manifest"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// defaultPath is the PATH docker gives images that set none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultShell runs shell-form instructions when the image sets no SHELL.
var defaultShell = []string{"/bin/sh", "-c"}

// scratchImage is the config of FROM scratch.
func scratchImage(p ocispec.Platform) dockerspec.DockerOCIImage {
	img := dockerspec.DockerOCIImage{Image: ocispec.Image{Platform: p, RootFS: ocispec.RootFS{Type: "layers"}}}
	img.Config.Env = []string{defaultPath}
	return img
}

// cloneImage copies every slice and map of img, so that a stage built on
// another never changes the other's config.
func cloneImage(img dockerspec.DockerOCIImage) dockerspec.DockerOCIImage {
	c := &img.Config
	c.Env, c.Entrypoint, c.Cmd = slices.Clone(c.Env), slices.Clone(c.Entrypoint), slices.Clone(c.Cmd)
	c.ExposedPorts, c.Volumes, c.Labels = maps.Clone(c.ExposedPorts), maps.Clone(c.Volumes), maps.Clone(c.Labels)
	c.Shell, c.OnBuild = slices.Clone(c.Shell), slices.Clone(c.OnBuild)
	if c.Healthcheck != nil {
		h := *c.Healthcheck
		h.Test = slices.Clone(h.Test)
		c.Healthcheck = &h
	}
	img.RootFS.DiffIDs = slices.Clone(img.RootFS.DiffIDs)
	img.History = slices.Clone(img.History)
	return img
}

// shell is the stage's SHELL.
func (s *stageRun) shell() []string {
	if len(s.img.Config.Shell) > 0 {
		return slices.Clone(s.img.Config.Shell)
	}
	return slices.Clone(defaultShell)
}

// commandLine is the argv of a CMD, ENTRYPOINT or RUN: exec form as
// written, shell form run by SHELL.
func (s *stageRun) commandLine(c instructions.ShellDependantCmdLine) []string {
	if !c.PrependShell {
		return slices.Clone(c.CmdLine)
	}
	return append(s.shell(), strings.Join(c.CmdLine, " "))
}

// configure applies an instruction that only changes the image config,
// and records it in the history as an empty layer.
func (s *stageRun) configure(c instructions.Command) error {
	cfg := &s.img.Config
	words := func(w string) ([]string, error) { return s.lex.ProcessWords(w, shell.EnvsFromSlice(s.env())) }
	handled, err := applyConfig(&cfg.ImageConfig, c, words)
	if err == nil && !handled {
		err = s.configureStage(c)
	}
	if err != nil {
		return err
	}
	s.steps = append(s.steps, manifest.Step{CreatedBy: text(c)})
	return nil
}

// configureStage applies the config instructions that depend on the
// stage (its SHELL, whether it set a CMD) or only a Dockerfile has.
func (s *stageRun) configureStage(c instructions.Command) error {
	cfg := &s.img.Config
	switch c := c.(type) {
	case *instructions.CmdCommand:
		cfg.Cmd = s.commandLine(c.ShellDependantCmdLine)
		s.cmdSet = true
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = s.commandLine(c.ShellDependantCmdLine)
		if !s.cmdSet {
			cfg.Cmd = nil // a CMD inherited from the base makes no sense with a new ENTRYPOINT
		}
	case *instructions.HealthCheckCommand:
		h := *c.Health
		h.Test = slices.Clone(h.Test)
		cfg.Healthcheck = &h
	case *instructions.ShellCommand:
		cfg.Shell = slices.Clone(c.Shell)
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression)
	case *instructions.MaintainerCommand:
		s.img.Author = c.Maintainer
	default:
		return fmt.Errorf("%s is not supported", c.Name())
	}
	return nil
}

// setWorkdir sets the working directory in the config.
func (s *stageRun) setWorkdir(c *instructions.WorkdirCommand) error {
	if c.Path == "" {
		return fmt.Errorf("WORKDIR path is empty")
	}
	p := c.Path
	if !path.IsAbs(p) {
		p = path.Join("/", s.img.Config.WorkingDir, p)
	}
	s.img.Config.WorkingDir = path.Clean(p)
	return nil
}

// workdir makes the working directory setWorkdir set, as docker does,
// which gives a layer when it did not exist.
func (s *stageRun) workdir(ctx context.Context, c *instructions.WorkdirCommand) error {
	if ok, err := s.streamWorkdir(ctx, c); ok || err != nil {
		return err
	}
	t, err := s.tree(ctx)
	if err != nil {
		return err
	}
	o, err := s.userOwner()
	if err != nil {
		return err
	}
	w := newFSWriter(t, s.r.rootless)
	defer w.restoreModes()
	if _, err := w.mkdirAll(s.img.Config.WorkingDir, o); err != nil {
		return err
	}
	return s.addLayer(ctx, w, c.String())
}

// setEnv replaces variable k in place, keeping the order, or appends it.
func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if name, _, _ := strings.Cut(e, "="); name == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}
