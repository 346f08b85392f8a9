package main_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBuildUnprivileged builds as uid 65534 (CI runs as root and drops to
// it): RUN runs in a user namespace, COPY --chown to a user the builder
// cannot chown to is recorded, and the image is the same, digest for
// digest, as the one root builds.
func TestBuildUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root to build as root and as uid 65534 and compare: run the suite as root (CI does: sudo make test)")
	}
	c := newCLI(t)
	busyboxBase(t, c)
	base := nobodyDir(t)
	dir := writeContext(t, filepath.Join(base, "ctx"), map[string]string{
		"Dockerfile": "FROM base:1\nCOPY --chown=app:staff app.conf /etc/app.conf\nCOPY app.conf /usr/lib/app/\n" +
			"RUN echo ran > /ran && mkdir /data\nRUN --mount=type=tmpfs,target=/usr/lib/tmp true\nUSER app\nRUN true\n",
		"app.conf": "x=1\n",
	})
	chownTree(t, base, nobody)
	const epoch = "SOURCE_DATE_EPOCH=1700000000"
	c.env = append(c.env, epoch)
	asRoot := strings.TrimSpace(c.ok("build", "-t", "root:1", dir))

	got, log := buildAsNobody(t, c, base, "nobody:1", dir, epoch)
	// Without subordinate ids USER cannot be switched to, and the build says so.
	if !strings.Contains(log, "running as root of the user namespace instead") {
		t.Errorf("no word about USER being ignored:\n%s", log)
	}
	if got != asRoot {
		t.Errorf("built as uid %d: %s; as root: %s", nobody, got, asRoot)
	}
	files := exportFiles(t, c, "nobody:1")
	if h := files["etc/app.conf"]; h == nil || h.Uid != 1000 || h.Gid != 50 {
		t.Errorf("etc/app.conf: %+v", h)
	}
	if h := files["usr/lib/app/app.conf"]; h == nil || files["usr/lib"].Mode != 0o555 {
		t.Errorf("COPY into the read-only /usr/lib: %+v, /usr/lib %+v", h, files["usr/lib"])
	}
	if h := files["ran"]; h == nil || h.Uid != 0 || h.Linkname != "ran\n" {
		t.Errorf("ran: %+v", h)
	}
}

// TestBuildInterrupted: SIGINT during a RUN stops the build with status
// 130, names nothing, and leaves no temporary directory behind.
func TestBuildInterrupted(t *testing.T) {
	c := newCLI(t)
	busyboxBase(t, c)
	before := c.images()
	dir := writeContext(t, t.TempDir(), map[string]string{"Dockerfile": "FROM base:1\nRUN echo started; sleep 60\n"})
	cmd := exec.Command(binary, "--root", c.root, "--progress", "plain", "build", "-t", "int:1", dir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.HasSuffix(sc.Text(), " started") {
			break
		}
	}
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	go func() {
		for sc.Scan() {
		}
	}()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("interrupted build: %v, want exit 130", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the build took %s to stop", d)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.root, "tmp")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
	if after := c.images(); len(after) != len(before) {
		t.Errorf("images after an interrupted build: %v", after)
	}
}

// TestBuildPullsBaseAndIsolatesNetwork: a base image the store lacks is
// pulled from its registry; RUN --network=none sees only loopback.
func TestBuildPullsBaseAndIsolatesNetwork(t *testing.T) {
	reg := newRegistry(t, nil)
	pusher := newCLI(t)
	busyboxBase(t, pusher)
	pusher.ok("push", "base:1", reg+"/lib/base:1")

	c := newCLI(t)
	dir := writeContext(t, t.TempDir(), map[string]string{"Dockerfile": "FROM " + reg + "/lib/base:1\n" +
		"RUN --network=none cat /proc/net/dev > /netdev\n"})
	r := c.run(nil, "build", "-t", "net:1", dir)
	if r.code != 0 {
		t.Fatalf("build: %s", r.stderr)
	}
	if !strings.Contains(r.stderr, "pulling "+reg+"/lib/base:1") {
		t.Errorf("progress does not say it pulled:\n%s", r.stderr)
	}
	if _, ok := c.images()[reg+"/lib/base:1"]; !ok {
		t.Errorf("the pulled base is not in the store: %v", c.images())
	}
	h := exportFiles(t, c, "net:1")["netdev"]
	if h == nil {
		t.Fatal("no /netdev")
	}
	var ifaces []string
	for _, l := range strings.Split(h.Linkname, "\n")[2:] {
		if name, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
			ifaces = append(ifaces, name)
		}
	}
	if strings.Join(ifaces, ",") != "lo" {
		t.Errorf("RUN --network=none sees interfaces %v", ifaces)
	}

	// --pull follows a tag the registry moved; without it the store's
	// copy is used.
	pushRandom(t, reg+"/lib/base:1")
	if r := c.run(nil, "build", "-t", "net:2", dir); r.code != 0 || strings.Contains(r.stderr, "pulling") {
		t.Errorf("build without --pull: %d\n%s", r.code, r.stderr)
	}
	// The moved tag names random layers without a shell: RUN fails.
	if r := c.run(nil, "build", "--pull", "-t", "net:3", dir); !strings.Contains(r.stderr, "pulling "+reg+"/lib/base:1") || r.code != 1 {
		t.Errorf("build --pull did not use the moved tag: %d\n%s", r.code, r.stderr)
	}
}

// TestBuildSecrets: --secret from a file and from the environment reach
// RUN --mount=type=secret, and neither stays in the image or on disk.
func TestBuildSecrets(t *testing.T) {
	c := newCLI(t)
	busyboxBase(t, c)
	c.env = append(c.env, "API_TOKEN=from-env")
	file := filepath.Join(t.TempDir(), "npmrc")
	if err := os.WriteFile(file, []byte("from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := writeContext(t, t.TempDir(), map[string]string{"Dockerfile": "FROM base:1\n" +
		"RUN --mount=type=secret,id=npmrc --mount=type=secret,id=token cat /run/secrets/npmrc /run/secrets/token > /used\n"})
	c.ok("build", "-t", "sec:1", "--secret", "id=npmrc,src="+file, "--secret", "id=token,env=API_TOKEN", dir)
	files := exportFiles(t, c, "sec:1")
	if h := files["used"]; h == nil || h.Linkname != "from-filefrom-env" {
		t.Errorf("/used: %+v", h)
	}
	if _, ok := files["run/secrets/npmrc"]; ok {
		t.Error("the secret's mount point is in the image")
	}
	if entries, _ := os.ReadDir(filepath.Join(c.root, "tmp")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
	if line := c.fail(1, "build", "--secret", "id=x,env=NOT_SET_ANYWHERE", dir); !strings.Contains(line, "NOT_SET_ANYWHERE is not set") {
		t.Errorf("unset secret variable: %s", line)
	}
}

// TestBuildAsRootMapsEveryID: run by root (as CI runs), RUN can chown to
// any id and USER is honoured, as in docker build.
func TestBuildAsRootMapsEveryID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root, whose RUN maps every id: run the suite as root (CI does: sudo make test)")
	}
	c := newCLI(t)
	busyboxBase(t, c)
	dir := writeContext(t, t.TempDir(), map[string]string{"Dockerfile": "FROM base:1\n" +
		"RUN mkdir -p /home/app && chown app:staff /home/app && echo x > /owned && chown 1234:4321 /owned\n" +
		"USER app\nRUN id -u > /home/app/ids && id -g >> /home/app/ids\n"})
	c.ok("build", "-t", "ids:1", dir)
	files := exportFiles(t, c, "ids:1")
	if h := files["owned"]; h == nil || h.Uid != 1234 || h.Gid != 4321 {
		t.Errorf("/owned: %+v", h)
	}
	if h := files["home/app/ids"]; h == nil || h.Linkname != "1000\n1000\n" || h.Uid != 1000 {
		t.Errorf("RUN as USER app: %+v", h)
	}
}

// TestConcurrentBuilds: builds sharing one store and one cache run at
// once and both land.
func TestConcurrentBuilds(t *testing.T) {
	c := newCLI(t)
	busyboxBase(t, c)
	dir := writeContext(t, t.TempDir(), map[string]string{"Dockerfile": "FROM base:1\nARG N\n" +
		"RUN --mount=type=cache,target=/c,sharing=locked echo $N >> /c/log && echo $N > /n\n"})
	errs := make(chan string, 2)
	for _, n := range []string{"1", "2"} {
		go func() {
			r := c.run(nil, "build", "-q", "--build-arg", "N="+n, "-t", "par:"+n, dir)
			if r.code != 0 {
				errs <- r.stderr
				return
			}
			errs <- ""
		}()
	}
	for range 2 {
		if e := <-errs; e != "" {
			t.Errorf("concurrent build: %s", e)
		}
	}
	images := c.images()
	for _, n := range []string{"1", "2"} {
		if _, ok := images["docker.io/library/par:"+n]; !ok {
			t.Errorf("par:%s missing: %v", n, images)
		}
		if h := exportFiles(t, c, "par:"+n)["n"]; h == nil || h.Linkname != n+"\n" {
			t.Errorf("par:%s /n = %+v", n, h)
		}
	}
}
