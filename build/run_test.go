package build

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRunChangesBecomeLayer: RUN really runs (shell and exec form, with
// ENV and ARG in its environment) and its changes, deletions included,
// are its layer.
func TestRunChangesBecomeLayer(t *testing.T) {
	s := baseStore(t)
	res, out, err := testBuild(t, s, t.TempDir(), `FROM base:1
ARG GREETING=hello
ENV TARGET=world
WORKDIR /work
RUN echo "$GREETING $TARGET" > greeting && mkdir -p sub && echo x > sub/x && rm /etc/group
RUN ["/bin/sh", "-c", "echo exec form > exec.txt; echo streamed output"]
RUN echo "$HTTP_PROXY" > proxy
`, func(r *Request) { r.BuildArgs = map[string]string{"HTTP_PROXY": "http://127.0.0.1:3128"} })
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "streamed output") || !strings.Contains(out, "[stage-0 5/7] RUN echo") || !strings.Contains(out, "DONE") {
		t.Errorf("progress:\n%s", out)
	}
	files := layerFiles(t, s, res, -3)
	if f := files["work/greeting"]; f.data != "hello world\n" || f.hdr.Uid != 0 {
		t.Errorf("greeting: %q uid %v", f.data, f.hdr)
	}
	if _, ok := files["work/sub/x"]; !ok {
		t.Errorf("no sub/x in %v", keys(files))
	}
	if _, ok := files["etc/.wh.group"]; !ok {
		t.Errorf("no whiteout for /etc/group in %v", keys(files))
	}
	if _, ok := files["proc"]; ok {
		t.Error("the executor's /proc mount point is in the layer")
	}
	if f := layerFiles(t, s, res, -2)["work/exec.txt"]; f.data != "exec form\n" {
		t.Errorf("exec form wrote %q", f.data)
	}
	// Proxy build args reach RUN without an ARG, and never the image.
	if f := layerFiles(t, s, res, -1)["work/proxy"]; f.data != "http://127.0.0.1:3128\n" {
		t.Errorf("HTTP_PROXY in RUN: %q", f.data)
	}
	if env := strings.Join(imageConfig(t, s, res).Config.Env, " "); strings.Contains(env, "PROXY") {
		t.Errorf("proxy in the image's env: %s", env)
	}
	if strings.Contains(out, "not consumed") {
		t.Errorf("a proxy build arg is reported unused:\n%s", out)
	}
}

// TestRunFailure: a failing RUN names the command, its exit status and
// the tail of its output.
func TestRunFailure(t *testing.T) {
	s := baseStore(t)
	_, out, err := testBuild(t, s, t.TempDir(), "FROM base:1\nRUN echo before; echo oops >&2; exit 3\n", nil)
	if err == nil {
		t.Fatal("build succeeded")
	}
	for _, want := range []string{"Dockerfile:2", `"/bin/sh -c echo before; echo oops >&2; exit 3"`, "exit code: 3", "oops"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !strings.Contains(out, "ERROR") {
		t.Errorf("progress does not show the error:\n%s", out)
	}
}

// TestMultiStage: COPY --from a named stage, FROM an earlier stage,
// --target, and stages the target does not need are not built.
func TestMultiStage(t *testing.T) {
	s := baseStore(t)
	df := `FROM base:1 AS build
RUN echo built > /artifact
FROM base:1 AS unused
RUN exit 1
FROM build AS extended
RUN echo more >> /artifact
FROM scratch
COPY --from=extended /artifact /out/artifact
COPY --from=0 /bin/busybox /bin/
COPY --from=base:1 /etc/passwd /etc/group /etc/
`
	res, out, err := testBuild(t, s, t.TempDir(), df, nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if strings.Contains(out, "[unused") {
		t.Errorf("the unused stage was built:\n%s", out)
	}
	if f := layerFiles(t, s, res, 0)["out/artifact"]; f.data != "built\nmore\n" {
		t.Errorf("artifact %q", f.data)
	}
	if f := layerFiles(t, s, res, 1)["bin/busybox"]; f.hdr == nil || f.hdr.Mode != 0o755 {
		t.Errorf("busybox: %+v", f.hdr)
	}
	if f := layerFiles(t, s, res, 2)["etc/group"]; !strings.Contains(f.data, "staff:x:50:") {
		t.Errorf("COPY --from an image: %q", f.data)
	}
	if !strings.Contains(out, "[internal] load image base:1") {
		t.Errorf("progress does not show the image being loaded:\n%s", out)
	}
	res, _, err = testBuild(t, s, t.TempDir(), df, func(r *Request) { r.Target = "build" })
	if err != nil {
		t.Fatal(err)
	}
	if n := layerCount(t, s, res); n != 2 {
		t.Errorf("--target build: %d layers", n)
	}
	if _, _, err := testBuild(t, s, t.TempDir(), df, func(r *Request) { r.Target = "nope" }); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown target: %v", err)
	}
}

// TestCopyErrors: a missing source, an ignored one and an unknown stage
// say which.
func TestCopyErrors(t *testing.T) {
	s := baseStore(t)
	ctx := contextDir(t, map[string]string{"a.txt": "a", "secret.key": "k", ".dockerignore": "*.key\n"})
	for _, tc := range []struct{ df, want string }{
		{"FROM base:1\nCOPY missing.txt /\n", `Dockerfile:2: COPY missing.txt /: "missing.txt" not found in the build context`},
		{"FROM base:1\nCOPY secret.key /\n", "excluded by .dockerignore"},
		{"FROM base:1\nCOPY *.go /\n", `"*.go" not found`},
		{"FROM base:1\nCOPY --from=nowhere /x /\n", "--from=nowhere is neither a stage"},
		{"FROM base:1\nCOPY a.txt .dockerignore /dst\n", "must be a directory"},
		{"FROM ${NOPE}\n", "the base image name \"${NOPE}\" is empty"},
		{"FROM base:1\nRUN --mount=type=secret,id=tok,required cat /run/secrets/tok\n", `secret "tok" is required`},
		{"FROM base:1\nFROOM x\n", "Dockerfile:2: FROOM x: unknown instruction: FROOM"},
		{"FROM --platform=linux/s390x base:1\n", "only this machine's platform"},
		{"FROM base:1\nARG DEST\nCOPY a.txt ${DEST:?required}\n", `Dockerfile:3: COPY a.txt ${DEST:?required}: expand variables: failed to process "${DEST:?required}": DEST: required`},
	} {
		_, _, err := testBuild(t, s, ctx, tc.df, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.df, err, tc.want)
		}
	}
}

// TestRunMounts: cache mounts persist between RUNs and stay out of the
// layer; bind mounts of the context honour .dockerignore; secrets are
// readable and not kept; tmpfs is empty.
func TestRunMounts(t *testing.T) {
	s := baseStore(t)
	ctx := contextDir(t, map[string]string{"src/a.txt": "from context", "src/b.key": "ignored", ".dockerignore": "**/*.key\n"})
	secret := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, out, err := testBuild(t, s, ctx, `FROM base:1
RUN --mount=type=cache,target=/cache echo one > /cache/f
RUN --mount=type=cache,target=/cache --mount=type=bind,source=src,target=/mnt cat /cache/f /mnt/a.txt > /seen; ls /mnt > /listing
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /secret-copy
RUN --mount=type=secret,id=tok,env=TOK echo "$TOK" > /secret-env
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x; ls /scratch > /tmpfs-listing
RUN ln -s /etc /link-out && ln -s ../../../tmp /link-up
RUN --mount=type=tmpfs,target=/link-out/sub --mount=type=cache,target=/link-up/c touch /etc/sub/x /tmp/c/y; ls /etc/sub /tmp/c > /via-links
`, func(r *Request) { r.Secrets = map[string]string{"tok": secret} })
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if f := imageFile(t, s, res, "seen"); f.data != "one\nfrom context" {
		t.Errorf("/seen = %q", f.data)
	}
	if f := imageFile(t, s, res, "listing"); f.data != "a.txt\n" {
		t.Errorf("bind mount shows %q", f.data)
	}
	if f := imageFile(t, s, res, "secret-copy"); f.data != "s3cret" {
		t.Errorf("secret %q", f.data)
	}
	if f := imageFile(t, s, res, "secret-env"); f.data != "s3cret\n" {
		t.Errorf("secret env %q", f.data)
	}
	// Targets through symlinks resolve inside the rootfs.
	if f := imageFile(t, s, res, "via-links"); f.data != "/etc/sub:\nx\n\n/tmp/c:\ny\n" {
		t.Errorf("mounts through symlinks: %q", f.data)
	}
	if f := imageFile(t, s, res, "tmpfs-listing"); f.data != "x\n" {
		t.Errorf("tmpfs listing %q", f.data)
	}
	for i := 1; i < layerCount(t, s, res); i++ {
		for p := range layerFiles(t, s, res, i) {
			if strings.HasPrefix(p, "cache") || strings.HasPrefix(p, "mnt") || strings.HasPrefix(p, "run") || strings.HasPrefix(p, "scratch") {
				t.Errorf("layer %d holds mount point %s", i, p)
			}
		}
	}
}

// TestCacheSharing: sharing=locked waits for the cache's lock,
// sharing=private takes a fresh directory while another holds it, and
// mode/uid apply to the cache directory.
func TestCacheSharing(t *testing.T) {
	s := baseStore(t)
	cacheRoot := t.TempDir()
	build := func(df string) (Result, error) {
		b := &Builder{Store: s, Executor: unshareExecutor{}, TempDir: filepath.Join(t.TempDir(), "tmp"), CacheDir: cacheRoot}
		return b.Build(context.Background(), Request{ContextDir: t.TempDir(), Dockerfile: []byte(df)})
	}
	dir := filepath.Join(cacheRoot, cacheKey("shared"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// private: the held lock sends the run to a fresh directory.
	if _, err := build("FROM base:1\nRUN --mount=type=cache,id=shared,target=/c,sharing=private touch /c/private\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "private")); !os.IsNotExist(err) {
		t.Errorf("sharing=private wrote into the locked cache: %v", err)
	}
	// locked: the run waits for the lock.
	released := make(chan time.Time, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		released <- time.Now()
		lock.Close()
	}()
	if _, err := build("FROM base:1\nRUN --mount=type=cache,id=shared,target=/c,sharing=locked,mode=0777,uid=1000 touch /c/locked\n"); err != nil {
		t.Fatal(err)
	}
	at := <-released
	fi, err := os.Stat(filepath.Join(dir, "locked"))
	if err != nil || fi.ModTime().Before(at) {
		t.Errorf("sharing=locked did not wait for the lock: %v %v", fi, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil || st.Mode&0o777 != 0o777 || (os.Geteuid() == 0 && st.Uid != 1000) {
		t.Errorf("cache directory mode %o uid %d (%v)", st.Mode&0o777, st.Uid, err)
	}
}

// TestCacheSharedMount: sharing=shared (the default) uses the cache
// directory while other builds do, and holds a shared lock on it for the
// run, which keeps prune --cache and sharing=locked runs off.
func TestCacheSharedMount(t *testing.T) {
	s := baseStore(t)
	cacheRoot := t.TempDir()
	dir := filepath.Join(cacheRoot, cacheKey("dl"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	other, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := unix.Flock(int(other.Fd()), unix.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	probe, err := os.OpenFile(dir+".lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	b := &Builder{Store: s, Executor: unshareExecutor{}, TempDir: filepath.Join(t.TempDir(), "tmp"), CacheDir: cacheRoot}
	// The run checks that nobody may take the lock exclusively meanwhile.
	df := "FROM base:1\nRUN --mount=type=cache,id=dl,target=/c touch /c/shared && sleep 3\n"
	done := make(chan error, 1)
	go func() {
		_, err := b.Build(context.Background(), Request{ContextDir: t.TempDir(), Dockerfile: []byte(df)})
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "shared")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sharing=shared did not run while another build holds the cache")
		}
		time.Sleep(20 * time.Millisecond)
	}
	other.Close() // only the run's shared lock is left
	if err := unix.Flock(int(probe.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		t.Error("the cache mount was lockable exclusively while a run used it")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(probe.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Errorf("the run kept the cache mount's lock: %v", err)
	}
}
