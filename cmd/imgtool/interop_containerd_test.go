package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInteropContainerd pulls through `imgtool registry serve` with
// containerd's ctr (Debian's containerd, started for the test with its own
// root, state and socket in the test's directory): an OCI image with zstd
// layers, a Docker v2 schema 2 image and an index, each unpacked and
// checked; then ctr pushes a retagged image back.
func TestInteropContainerd(t *testing.T) {
	srv := startRegistry(t, t.TempDir())
	reg := srv.addr
	run := ctrClient(t, srv)

	// Three shapes of image: imgtool's own push (OCI, zstd), a Docker v2
	// schema 2 copy made by skopeo (gzip) and an index made by crane.
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	c.ok("import", rootfs, "-t", reg+"/imgtool/zstd:1")
	c.ok("import", rootfs, "-t", reg+"/imgtool/gzip:1", "--compression", "gzip")
	want := map[string]string{}
	for _, name := range []string{"zstd", "gzip"} {
		want[reg+"/imgtool/"+name+":1"] = strings.TrimSpace(c.ok("push", reg+"/imgtool/"+name+":1"))
	}
	skopeo(t, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--format", "v2s2",
		"docker://"+reg+"/imgtool/gzip:1", "docker://"+reg+"/skopeo/v2s2:1")
	want[reg+"/skopeo/v2s2:1"] = manifestDigest(t, reg, "skopeo/v2s2", "1")
	crane := client{t: t, srv: srv, exe: goTool(t, cranePkg, ""), env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
	crane.run("index", "append", "-m", reg+"/imgtool/zstd:1", "-t", reg+"/crane/idx:1")
	want[reg+"/crane/idx:1"] = manifestDigest(t, reg, "crane/idx", "1")

	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	for ref, digest := range want {
		run("images", "pull", "--plain-http", "--snapshotter", "native", ref)
		if got := ctrDigest(t, run("images", "ls"), ref); got != digest {
			t.Errorf("ctr pulled %s as %s, the registry serves %s", ref, got, digest)
		}
		// The unpacked snapshot holds the image's files.
		run("images", "mount", "--snapshotter", "native", "--rw=false", ref, mnt)
		got, err := os.ReadFile(filepath.Join(mnt, "bin", "busybox"))
		run("images", "unmount", mnt)
		if err != nil || !bytes.Equal(got, busybox) {
			t.Errorf("%s unpacked by containerd: bin/busybox has %d bytes (%v), want %d", ref, len(got), err, len(busybox))
		}
	}

	// ctr pushes a retagged image: the registry serves the same manifest.
	run("images", "tag", reg+"/imgtool/zstd:1", reg+"/ctr/zstd:1")
	run("images", "push", "--plain-http", reg+"/ctr/zstd:1")
	if got := manifestDigest(t, reg, "ctr/zstd", "1"); got != want[reg+"/imgtool/zstd:1"] {
		t.Errorf("ctr push: the registry serves %s, want %s", got, want[reg+"/imgtool/zstd:1"])
	}
}

// ctrClient starts containerd for the test and returns a runner of ctr
// commands against it.
func ctrClient(t *testing.T, srv *server) func(args ...string) string {
	t.Helper()
	exe := debTool(t, "ctr", "containerd")
	if os.Geteuid() != 0 {
		t.Fatal("needs root to run containerd (it mounts snapshots); run the suite as root (CI does: sudo make test)")
	}
	sock := startContainerd(t, debTool(t, "containerd", "containerd"), exe)
	ctr := client{t: t, srv: srv, exe: exe}
	return func(args ...string) string {
		t.Helper()
		return ctr.run(append([]string{"--address", sock, "--namespace", "interop"}, args...)...)
	}
}

// ctrDigest finds ref's digest in `ctr images ls` output (REF TYPE DIGEST …).
func ctrDigest(t *testing.T, ls, ref string) string {
	t.Helper()
	for _, line := range strings.Split(ls, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == ref {
			return f[2]
		}
	}
	t.Fatalf("%s not in ctr images ls:\n%s", ref, ls)
	return ""
}

// startContainerd runs containerd with root, state and socket under a
// temporary directory and only the plugins a pull needs (no CRI, no
// tracing exporter, no /opt plugin dir), stops it when the test ends, and
// returns its socket once ctr gets an answer.
func startContainerd(t *testing.T, exe, ctr string) string {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "containerd.sock")
	config := `version = 2
root = "` + dir + `/root"
state = "` + dir + `/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "` + sock + `"
[ttrpc]
  address = "` + sock + `.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
`
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "containerd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(exe, "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("containerd did not stop within 20s of SIGTERM")
		}
	})
	for range 100 { // up to 10 s
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			t.Fatalf("containerd exited: %v\n%s", waitErr, out)
		case <-time.After(100 * time.Millisecond):
		}
		if exec.Command(ctr, "--address", sock, "version").Run() == nil {
			return sock
		}
	}
	t.Fatalf("containerd did not answer on %s within 10s", sock)
	return ""
}
