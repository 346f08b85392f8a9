//go:build !imgtool_lean

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/imgtool/imgtool/build"
	"github.com/imgtool/imgtool/layer"
	"github.com/imgtool/imgtool/manifest"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	"github.com/spf13/cobra"
)

type buildOptions struct {
	file         string
	tags         []string
	buildArgs    []string
	target       string
	platform     string
	labels       []string
	annotations  []string
	compression  string
	epoch        string
	iidfile      string
	metadataFile string
	outputs      []string
	push         bool
	noCache      bool
	secrets      []string
	ssh          []string
	quiet        bool
	pull         bool
	cache        cacheOptions
}

func newBuildCmd(o *globalOptions) *cobra.Command {
	var opts buildOptions
	cmd := &cobra.Command{
		Use:   "build [flags] PATH|GIT-URL",
		Short: "Build an image from a Dockerfile, without a daemon and without root",
		Long: `Build the image a Dockerfile describes, with PATH as the build context, into the
local store, and name it with every -t. The Dockerfile is PATH/Dockerfile unless -f
names another (-f - reads it from standard input); PATH/.dockerignore, or
<Dockerfile>.dockerignore beside it, leaves files out of the context as in docker.

PATH may be a git repository instead, as in docker: https://host/repo.git#REF:SUBDIR,
git@host:repo.git#REF, git://..., or file:///repo for a local one; -f is then a
path inside it. Private https repositories (the context, and ADD's) take the token
of --secret id=GIT_AUTH_TOKEN (or GIT_AUTH_TOKEN.HOST), as with BuildKit.

Stages the target (--target, default the last) does not need are not built. RUN
runs in new user, mount and pid namespaces, without root. Layers are zstd-compressed by
default (--compression gzip for docker before 23). With SOURCE_DATE_EPOCH (or
--source-date-epoch) the same inputs always give the same image digest.

Every step is cached under ROOT/cache/build: a step whose instruction, inputs (the
files a COPY copies, the ARGs a RUN sees) and parent steps are unchanged is shown
CACHED and not run. --no-cache runs them all; --no-cache-filter the steps of the stages
it names. --cache-to type=registry,ref=REF[,mode=max] exports the cache to a registry,
--cache-from type=registry,ref=REF takes steps from it (another machine, an empty root).
imgtool prune --cache empties it.

--output writes the image elsewhere too: type=oci,dest=DIR, type=oci-archive,dest=FILE,
type=docker-archive,dest=FILE or type=registry,name=REF; or its filesystem:
type=local,dest=DIR (or just DIR) and type=tar,dest=FILE (or - for standard output).
--push pushes every -t.`,
		Example: `  imgtool build -t app:1 .
  imgtool build -f build/Dockerfile --target runtime --build-arg VERSION=1.2 -t app:1 .
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) imgtool build -t reg.example/app:1 --push .
  imgtool build -t app:1 https://github.com/example/app.git#v1.2:docker
  imgtool build --secret id=GIT_AUTH_TOKEN,env=GITHUB_TOKEN -t app:1 https://github.com/example/private.git
  imgtool build -o type=oci-archive,dest=app.tar --iidfile app.id .
  imgtool build --ssh default -t app:1 .      # RUN --mount=type=ssh gets the agent at $SSH_AUTH_SOCK
  imgtool build --cache-to type=registry,ref=reg.example/app:cache,mode=max --cache-from reg.example/app:cache -t app:1 .`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.build(cmd, args[0], &opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.file, "file", "f", "", "the Dockerfile (default PATH/Dockerfile; - reads standard input)")
	f.StringArrayVarP(&opts.tags, "tag", "t", nil, "name of the image (repeatable)")
	f.StringArrayVar(&opts.buildArgs, "build-arg", nil, "set a build-time variable, KEY=VALUE or KEY to take it from the environment (repeatable)")
	f.StringVar(&opts.target, "target", "", "the stage to build (default: the last)")
	f.StringVar(&opts.platform, "platform", "", "platform to build for; only this machine's can be built (default: this machine's)")
	f.StringArrayVar(&opts.labels, "label", nil, "add a label to the image, KEY=VALUE (repeatable)")
	f.StringArrayVar(&opts.annotations, "annotation", nil, "add an annotation to the image manifest, KEY=VALUE (repeatable)")
	f.StringVar(&opts.compression, "compression", "zstd", "layer compression: zstd, gzip or none")
	f.StringVar(&opts.epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "clamp times to this Unix time for reproducible images (env SOURCE_DATE_EPOCH)")
	f.StringVar(&opts.iidfile, "iidfile", "", "write the image's digest to this file")
	f.StringVar(&opts.metadataFile, "metadata-file", "", "write the build result's digests as JSON to this file, as buildx does")
	f.StringArrayVarP(&opts.outputs, "output", "o", nil, "also write the image: type=oci|oci-archive|docker-archive,dest=PATH, type=registry,name=REF, or its filesystem: type=local,dest=DIR, type=tar,dest=FILE, - (repeatable)")
	f.BoolVar(&opts.push, "push", false, "push the image to the registry of every -t")
	f.BoolVar(&opts.noCache, "no-cache", false, "run every step instead of taking it from the build cache (the results are still cached)")
	opts.cache.register(f)
	f.StringArrayVar(&opts.secrets, "secret", nil, "secret for RUN --mount=type=secret, or GIT_AUTH_TOKEN[.HOST] / GIT_AUTH_HEADER[.HOST] for private https git repositories: id=ID,src=FILE or id=ID,env=VAR (repeatable)")
	f.StringArrayVar(&opts.ssh, "ssh", nil, "ssh agent for RUN --mount=type=ssh: default (the agent at $SSH_AUTH_SOCK), ID=SOCKET or ID=KEYFILE[,KEYFILE...] (repeatable)")
	f.BoolVar(&opts.pull, "pull", false, "pull base images again even when the store has them")
	f.BoolVarP(&opts.quiet, "quiet", "q", false, "print only the image digest (same as --progress quiet)")
	return cmd
}

// build runs one imgtool build: parse the flags, build, name, export.
func (o *globalOptions) build(cmd *cobra.Command, contextDir string, opts *buildOptions) error {
	var progress io.Writer = os.Stderr
	if opts.quiet || o.progress == "quiet" {
		progress = io.Discard
	}
	// Secrets first: a git context may need GIT_AUTH_TOKEN.
	specs, err := parseSecrets(opts.secrets)
	if err != nil {
		return err
	}
	secrets, cleanup, err := secretFiles(specs, filepath.Join(o.root, "tmp"))
	defer cleanup()
	if err != nil {
		return err
	}
	gitDir, cleanupGit, err := gitContext(cmd.Context(), contextDir, filepath.Join(o.root, "tmp"), secrets, progress)
	defer cleanupGit()
	if err != nil {
		return err
	}
	if gitDir != contextDir {
		contextDir = gitDir
		if opts.file, err = inContext(contextDir, opts.file); err != nil {
			return err
		}
	}
	req, err := opts.request(contextDir)
	if err != nil {
		return err
	}
	outs, err := opts.destinations()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	s, err := o.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	req.Secrets = secrets
	if err := opts.cache.apply(&req, o.env(s)); err != nil {
		return err
	}
	keep, err := parseStorage("--cache-keep-storage", opts.cache.keepStorage)
	if err != nil {
		return err
	}
	show := !opts.quiet && o.progress != "quiet"
	b, err := o.newBuilder(ctx, s, show)
	if err != nil {
		return err
	}
	res, err := b.Build(ctx, req)
	if err != nil {
		return err
	}
	if res.Ran > 0 {
		if err := boundBuildCache(ctx, s, b.Cache, keep); err != nil {
			fmt.Fprintf(os.Stderr, "warning: bound the build cache: %v\n", err)
		}
	}
	if err := nameImage(ctx, s, opts.tags, res); err != nil {
		return err
	}
	for _, out := range outs {
		if err := o.exportBuild(ctx, s, res, out, opts.tags, show); err != nil {
			return err
		}
	}
	if err := writeResultFiles(opts, res); err != nil {
		return err
	}
	for _, out := range outs {
		if out.tar == "-" {
			return nil // standard output holds the tar
		}
	}
	fmt.Fprintln(cmd.OutOrStdout(), res.Manifest.Digest)
	return nil
}

// destinations are where the image goes besides the store: --output,
// and the registry of every -t with --push.
func (opts *buildOptions) destinations() ([]output, error) {
	outs, err := parseOutputs(opts.outputs)
	if err != nil {
		return nil, usageError{err}
	}
	for _, t := range opts.tags {
		if _, err := store.NormalizeRef(t); err != nil {
			return nil, usageError{err}
		}
	}
	if !opts.push {
		return outs, nil
	}
	if len(opts.tags) == 0 {
		return nil, usageError{errors.New("build --push: name the image with -t REF")}
	}
	for _, t := range opts.tags {
		outs = append(outs, output{loc: transport.Location{Kind: transport.Registry, Ref: t}})
	}
	return outs, nil
}

// nameImage records the image in the store under every tag, or unnamed.
func nameImage(ctx context.Context, s *store.Store, tags []string, res build.Result) error {
	if len(tags) == 0 {
		return s.Set(ctx, "", res.Manifest)
	}
	for _, t := range tags {
		if err := s.Set(ctx, t, res.Manifest); err != nil {
			return err
		}
	}
	return nil
}

// request turns the flags into a build request.
func (opts *buildOptions) request(contextDir string) (build.Request, error) {
	req := build.Request{ContextDir: contextDir, Target: opts.target, PullAlways: opts.pull, NoCache: opts.noCache}
	var err error
	if req.Compression, err = layer.ParseCompression(opts.compression); err != nil {
		return req, usageError{err}
	}
	if req.Platform, err = manifest.ParsePlatform(opts.platform); err != nil {
		return req, usageError{err}
	}
	if req.SourceDateEpoch, err = manifest.ParseSourceDateEpoch(opts.epoch); err != nil {
		return req, usageError{err}
	}
	if req.BuildArgs, err = keyValues("--build-arg", opts.buildArgs, true); err != nil {
		return req, err
	}
	if req.Labels, err = keyValues("--label", opts.labels, false); err != nil {
		return req, err
	}
	if req.Annotations, err = keyValues("--annotation", opts.annotations, false); err != nil {
		return req, err
	}
	if req.SSH, err = sshAgents(opts.ssh); err != nil {
		return req, err
	}
	return req, readDockerfile(&req, opts.file)
}

// readDockerfile reads -f (default PATH/Dockerfile; - is standard input).
func readDockerfile(req *build.Request, file string) error {
	switch file {
	case "-":
		data, err := io.ReadAll(io.LimitReader(os.Stdin, maxDockerfile+1))
		if err != nil {
			return fmt.Errorf("read Dockerfile from standard input: %w", err)
		}
		req.Dockerfile, req.DockerfileName = data, "Dockerfile"
	case "":
		file = filepath.Join(req.ContextDir, "Dockerfile")
		fallthrough
	default:
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("read Dockerfile: %w", err)
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxDockerfile+1))
		if err != nil {
			return fmt.Errorf("read Dockerfile: %w", err)
		}
		req.Dockerfile, req.DockerfileName, req.DockerfilePath = data, file, file
	}
	if len(req.Dockerfile) > maxDockerfile {
		return fmt.Errorf("read Dockerfile: more than %d bytes", maxDockerfile)
	}
	return nil
}

// maxDockerfile bounds the Dockerfile read (BuildKit's own limit is
// similar).
const maxDockerfile = 4 << 20

// keyValues parses KEY=VALUE flags. With fromEnv, a bare KEY takes its
// value from the environment (and is left out when unset), as docker's
// --build-arg does.
func keyValues(flag string, list []string, fromEnv bool) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return nil, usageError{fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)}
		}
		if !ok {
			if !fromEnv {
				return nil, usageError{fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)}
			}
			if v, ok = os.LookupEnv(k); !ok {
				continue
			}
		}
		out[k] = v
	}
	return out, nil
}

// secretSpec is one --secret: a file, or an environment variable read
// now.
type secretSpec struct{ id, src, env string }

// parseSecrets parses --secret id=ID,src=FILE or id=ID,env=VAR (a bare
// id=ID takes the variable ID, as buildx does).
func parseSecrets(list []string) ([]secretSpec, error) {
	var out []secretSpec
	for _, s := range list {
		var sp secretSpec
		for _, f := range strings.Split(s, ",") {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "id":
				sp.id = v
			case "src", "source":
				sp.src = v
			case "env":
				sp.env = v
			case "type":
			default:
				return nil, usageError{fmt.Errorf("--secret %q: unknown field %q; want id=ID,src=FILE or id=ID,env=VAR", s, k)}
			}
		}
		if sp.id == "" {
			sp.id = cmpOr(sp.env, filepath.Base(sp.src))
		}
		if sp.id == "" || sp.id == "." {
			return nil, usageError{fmt.Errorf("--secret %q: want id=ID,src=FILE or id=ID,env=VAR", s)}
		}
		if sp.src == "" && sp.env == "" {
			sp.env = sp.id
		}
		out = append(out, sp)
	}
	return out, nil
}

// secretFiles gives each secret a file for the build: its own, or, for
// env= secrets, a 0600 file in a directory under tmp that cleanup
// removes (call it whatever the error).
func secretFiles(specs []secretSpec, tmp string) (map[string]string, func(), error) {
	out := map[string]string{}
	var dir string
	cleanup := func() {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	for _, sp := range specs {
		if sp.src != "" {
			if _, err := os.Stat(sp.src); err != nil {
				return nil, cleanup, fmt.Errorf("--secret %s: %w", sp.id, err)
			}
			out[sp.id] = sp.src
			continue
		}
		v, ok := os.LookupEnv(sp.env)
		if !ok {
			return nil, cleanup, fmt.Errorf("--secret %s: environment variable %s is not set", sp.id, sp.env)
		}
		if dir == "" {
			if err := os.MkdirAll(tmp, 0o700); err != nil {
				return nil, cleanup, err
			}
			d, err := os.MkdirTemp(tmp, "secrets-")
			if err != nil {
				return nil, cleanup, err
			}
			dir = d
		}
		f := filepath.Join(dir, "secret-"+strconv.Itoa(len(out)))
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			return nil, cleanup, fmt.Errorf("--secret %s: %w", sp.id, err)
		}
		out[sp.id] = f
	}
	return out, cleanup, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
