package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/runner"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

type runOptions struct {
	env, envFiles, volumes, tmpfs []string
	workdir, user, entrypoint     string
	hostname, network             string
	interactive, tty, readOnly    bool
	rm, entrypointSet             bool
}

func newRunCmd(o *globalOptions) *cobra.Command {
	var ro runOptions
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Run a command in a new rootless container from an image",
		Long: `Run COMMAND (or the image's entrypoint and cmd, merged as docker does) in a new
container made of IMAGE's filesystem, as the calling user, in new user, mount,
pid, uts and ipc namespaces. IMAGE not in the store is pulled first.

Containers are ephemeral: the image's files are the lower layer of an overlay
whose writable layer lives in memory and is gone when the command exits, so
nothing of one run is seen by the next or stays on disk (--rm is accepted and
changes nothing). The exit status is the command's, 128+N when it died of
signal N, 127 when it cannot be found.

Without subordinate ids (/etc/subuid, /etc/subgid and newuidmap), the caller is
mapped to root alone and only uid 0 exists in the container.`,
		Example: `  imgtool run busybox echo hello
  imgtool run -e K=V -v $PWD/conf:/conf:ro app:1
  imgtool run --network none -u nobody -w /tmp app:1 ./selftest
  imgtool run -it busybox sh`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ro.entrypointSet = cmd.Flags().Changed("entrypoint")
			spec, err := ro.spec(cmd)
			if err != nil {
				return usageError{err}
			}
			return o.runImage(cmd.Context(), args[0], args[1:], &ro, spec)
		},
	}
	// Docker's syntax: flags after IMAGE belong to the command.
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.StringArrayVarP(&ro.env, "env", "e", nil, "set an environment variable (KEY=VALUE, or KEY to pass the caller's)")
	f.StringArrayVar(&ro.envFiles, "env-file", nil, "read environment variables from a file")
	f.StringArrayVarP(&ro.volumes, "volume", "v", nil, "bind mount HOST:CONTAINER[:ro]")
	f.StringArrayVar(&ro.tmpfs, "tmpfs", nil, "mount a tmpfs at PATH")
	f.StringVarP(&ro.workdir, "workdir", "w", "", "working directory inside the container (created when missing)")
	f.StringVarP(&ro.user, "user", "u", "", "USER[:GROUP], names or numeric ids")
	f.StringVar(&ro.entrypoint, "entrypoint", "", "override the image's entrypoint (an empty string clears it)")
	f.StringVar(&ro.hostname, "hostname", "", "container host name")
	f.StringVar(&ro.network, "network", "host", "network: host (the caller's) or none (only lo)")
	f.BoolVarP(&ro.interactive, "interactive", "i", false, "keep standard input open")
	f.BoolVarP(&ro.tty, "tty", "t", false, "allocate a pseudo-terminal")
	f.BoolVar(&ro.readOnly, "read-only", false, "mount the root filesystem read-only")
	f.BoolVar(&ro.rm, "rm", true, "remove the container when it exits (always)")
	return cmd
}

// spec turns the flags into the parts of a runner.Spec that do not need
// the image, so that bad flags fail before anything is pulled.
func (ro *runOptions) spec(cmd *cobra.Command) (runner.Spec, error) {
	var s runner.Spec
	switch ro.network {
	case "host", "default", "":
		s.Network = runner.NetworkHost
	case "none":
		s.Network = runner.NetworkNone
	default:
		return s, fmt.Errorf("--network %q: want host or none", ro.network)
	}
	for _, v := range ro.volumes {
		m, err := runner.ParseVolume(v)
		if err != nil {
			return s, fmt.Errorf("-v: %w", err)
		}
		s.Mounts = append(s.Mounts, m)
	}
	for _, v := range ro.tmpfs {
		m, err := runner.ParseTmpfs(v)
		if err != nil {
			return s, fmt.Errorf("--tmpfs: %w", err)
		}
		s.Mounts = append(s.Mounts, m)
	}
	if ro.workdir != "" && !strings.HasPrefix(ro.workdir, "/") {
		return s, fmt.Errorf("-w %q: the working directory must be absolute", ro.workdir)
	}
	s.Cwd, s.User, s.Hostname, s.TTY = ro.workdir, ro.user, ro.hostname, ro.tty
	s.ReadOnly = ro.readOnly
	if ro.tty && ro.interactive {
		if f, ok := cmd.InOrStdin().(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
			return s, errors.New("-it: the input device is not a TTY (drop -t)")
		}
	}
	return s, nil
}

// env merges the image's environment with --env-file and -e, in docker's
// order of precedence.
func (ro *runOptions) envFor(image []string) ([]string, error) {
	var fromFiles []string
	for _, name := range ro.envFiles {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		vals, err := runner.ParseEnvFile(f, os.LookupEnv)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("--env-file %s: %w", name, err)
		}
		fromFiles = append(fromFiles, vals...)
	}
	fromFlags, err := runner.ParseEnv(ro.env, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("-e: %w", err)
	}
	return runner.MergeEnv(image, fromFiles, fromFlags), nil
}

func (o *globalOptions) runImage(ctx context.Context, ref string, args []string, ro *runOptions, spec runner.Spec) error {
	spec.Notice = o.noticeOnce()
	spec.Init = o.initExe()
	stdio := runner.Stdio{Stdout: os.Stdout, Stderr: os.Stderr}
	if ro.interactive {
		stdio.Stdin = os.Stdin
	}
	// The container's init starts first, before even the store is open,
	// so that its start overlaps finding the image and leasing its
	// filesystem. Signals are forwarded to the container rather than
	// cancelling it.
	runCtx := context.WithoutCancel(ctx)
	c, err := runner.Start(runCtx, spec, stdio)
	if err != nil {
		return fmt.Errorf("run %s: %w", ref, err)
	}
	defer c.Close()
	s, err := o.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()

	im, err := o.resolveOrPullRun(ctx, s, ref)
	if err != nil {
		return err
	}
	m, err := store.ImageManifest(ctx, s, im.Descriptor)
	if err != nil {
		return err
	}
	raw, err := store.ReadManifest(ctx, s, m.Config)
	if err != nil {
		return err
	}
	cfg, err := manifest.ParseConfig(raw)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	var epOverride *[]string
	if ro.entrypointSet {
		ep := []string{}
		if ro.entrypoint != "" {
			ep = []string{ro.entrypoint}
		}
		epOverride = &ep
	}
	spec.Args = manifest.Command(cfg.Config.Entrypoint, cfg.Config.Cmd, epOverride, args)
	if spec.Env, err = ro.envFor(cfg.Config.Env); err != nil {
		return usageError{err}
	}
	if spec.Cwd == "" {
		spec.Cwd = cfg.Config.WorkingDir
	}
	if spec.User == "" {
		spec.User = cfg.Config.User
	}

	layers, err := manifest.Layers(m, cfg)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	lease, err := o.leaseRootfs(ctx, s, layers)
	if err != nil {
		return err
	}
	defer lease.Release()

	// Not stopped: the process ends with the run, and signal.Stop waits
	// for os/signal's loop to go idle, a third of a millisecond of a
	// 10 ms run. A signal that comes after the run is ignored.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	spec.Signals = sigs
	code, err := o.runWithRootfs(runCtx, c, lease, spec, stdio)
	if errors.Is(err, runner.ErrExec) {
		fmt.Fprintf(os.Stderr, "imgtool: run: %v\n", err)
		return exitStatus(code)
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", ref, err)
	}
	if code != 0 {
		return exitStatus(code)
	}
	return nil
}

// resolveOrPullRun finds ref in the store, pulling it first when it is
// not there (docker run's behaviour); transport sources work too.
func (o *globalOptions) resolveOrPullRun(ctx context.Context, s *store.Store, ref string) (store.Image, error) {
	loc, err := transport.ParseLocation(ref, transport.Store)
	if err != nil {
		return store.Image{}, usageError{err}
	}
	im, err := o.resolveOrPull(ctx, s, loc)
	if err == nil || loc.Kind != transport.Store || !errors.Is(err, store.ErrNotFound) {
		return im, err
	}
	remote, perr := transport.ParseLocation("docker://"+ref, transport.Store)
	if perr != nil {
		return store.Image{}, err
	}
	fmt.Fprintf(os.Stderr, "Unable to find image %q locally; pulling it\n", ref)
	return o.resolveOrPull(ctx, s, remote)
}

// exitStatus is a command's exit status passed through as imgtool's own.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
