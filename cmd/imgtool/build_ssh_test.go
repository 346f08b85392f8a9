package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sshKeysTool builds internal/cmd/sshkeys (ssh-add -l for images of
// busybox, which has none), static, once.
var sshKeysTool = sync.OnceValues(func() (string, error) {
	out := filepath.Join(filepath.Dir(binary), "sshkeys")
	cmd := exec.Command("go", "build", "-o", out, "github.com/imgtool/imgtool/internal/cmd/sshkeys")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", &exec.Error{Name: "go build sshkeys: " + string(msg), Err: err}
	}
	return out, nil
})

// asUser runs cmd as uid (0: as the caller).
func asUser(cmd *exec.Cmd, uid int) *exec.Cmd {
	if uid != 0 && os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	return cmd
}

// sshKeygen makes an ed25519 key with OpenSSH's ssh-keygen (passphrase
// pass, "" for none) and returns its file and SHA256 fingerprint.
func sshKeygen(t *testing.T, dir, name, pass string) (string, string) {
	t.Helper()
	file := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", pass, "-C", name, "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen (the tests need openssh-client): %v\n%s", err, out)
	}
	out, err := exec.Command("ssh-keygen", "-l", "-f", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out)) // 256 SHA256:... name (ED25519)
	if len(f) < 2 {
		t.Fatalf("ssh-keygen -l: %q", out)
	}
	return file, f[1]
}

// sshAgentAs runs OpenSSH's ssh-agent as uid with a socket in dir,
// holding the keys given, until the test ends, and returns the socket.
func sshAgentAs(t *testing.T, uid int, dir string, keys ...string) string {
	t.Helper()
	sock := filepath.Join(dir, "agent.sock")
	agent := asUser(exec.Command("ssh-agent", "-D", "-a", sock), uid)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Kill()
		agent.Wait()
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("ssh-agent made no socket in 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, k := range keys {
		add := asUser(exec.Command("ssh-add", k), uid)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v\n%s", err, out)
		}
	}
	return sock
}

// TestBuildSSH: imgtool build --ssh forwards OpenSSH's agent (default)
// and serves key files (another id) to RUN --mount=type=ssh, as root
// and as uid 65534; the image holds what the RUN saw and not the
// socket; bad --ssh input fails clearly and changes no image.
func TestBuildSSH(t *testing.T) {
	asRootAndNobody(t, testBuildSSH)
}

func testBuildSSH(t *testing.T, uid int) {
	tool, err := sshKeysTool()
	if err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	busyboxBase(t, c)
	base := nobodyDir(t)
	keys := filepath.Join(base, "keys")
	os.Mkdir(keys, 0o700)
	agentKey, agentFP := sshKeygen(t, keys, "agent-key", "")
	deployKey, deployFP := sshKeygen(t, keys, "deploy-key", "")
	lockedKey, _ := sshKeygen(t, keys, "locked-key", "passphrase")
	df := "FROM base:1\nCOPY sshkeys /bin/sshkeys\n" +
		"RUN --mount=type=ssh sshkeys > /keys\n" +
		"RUN --mount=type=ssh,id=deploy,required=true sshkeys > /deploy\n"
	if uid == 0 {
		// Root maps every id: the socket is given to USER app.
		df += "RUN mkdir -m 777 /out\nUSER app\nRUN --mount=type=ssh,uid=1000 id -u > /out/id && sshkeys > /out/app-keys\n"
	}
	data, err := os.ReadFile(tool)
	if err != nil {
		t.Fatal(err)
	}
	dir := writeContext(t, filepath.Join(base, "ctx"), map[string]string{"Dockerfile": df, "sshkeys": string(data)})
	os.Chmod(filepath.Join(dir, "sshkeys"), 0o755)
	chownTree(t, base, uid)
	if uid != 0 {
		chownTree(t, c.root, uid)
		c.uid = uid
	}
	sock := sshAgentAs(t, uid, keys, agentKey)
	c.env = append(c.env, "SSH_AUTH_SOCK="+sock)

	c.ok("build", "-t", "ssh:1", "--ssh", "default", "--ssh", "deploy="+deployKey, dir)
	before := c.images()
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--ssh", "default"}, "", `ssh agent "deploy" is required; give it with --ssh deploy`},
		{[]string{"--ssh", "default", "--ssh", "deploy"}, "SSH_AUTH_SOCK=", "--ssh default: SSH_AUTH_SOCK is not set"},
		{[]string{"--ssh", "deploy=" + filepath.Join(keys, "absent")}, "", "no such file"},
		{[]string{"--ssh", "deploy=" + lockedKey}, "", "passphrase-protected: add it to an ssh-agent"},
		{[]string{"--ssh", "deploy=" + sock + "," + deployKey}, "", "an agent socket or key files, not both"},
	} {
		if tc.env != "" {
			c.env = append(c.env, tc.env)
		}
		// --no-cache: a cached step needs no agent, as in BuildKit.
		args := append(append([]string{"build", "--no-cache", "-t", "ssh:2"}, tc.args...), dir)
		code := 1
		if strings.Contains(tc.want, "not both") {
			code = 2
		}
		if line := c.fail(code, args...); !strings.Contains(line, tc.want) {
			t.Errorf("build %v: %s, want %q", tc.args, line, tc.want)
		}
		if tc.env != "" {
			c.env = c.env[:len(c.env)-1]
		}
	}
	if after := c.images(); len(after) != len(before) {
		t.Errorf("failed builds changed the images: %v", after)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.root, "tmp")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
	// Read as root: the export's temporary directory is the test's.
	c.uid = 0
	files := exportFiles(t, c, "ssh:1")
	if h := files["keys"]; h == nil || !strings.Contains(h.Linkname, agentFP+" agent-key") {
		t.Errorf("keys the RUN saw through the agent: %+v, want %s", h, agentFP)
	}
	if h := files["deploy"]; h == nil || !strings.Contains(h.Linkname, deployFP+" ") || strings.Contains(h.Linkname, agentFP) {
		t.Errorf("keys the RUN saw from --ssh deploy=KEYFILE: %+v, want %s alone", h, deployFP)
	}
	if uid == 0 {
		if h := files["out/id"]; h == nil || h.Linkname != "1000\n" || !strings.Contains(files["out/app-keys"].Linkname, agentFP) {
			t.Errorf("USER app with uid=1000: %+v %+v", h, files["out/app-keys"])
		}
	}
	for name := range files {
		if strings.HasPrefix(name, "run") {
			t.Errorf("the image holds %s", name)
		}
	}
}
