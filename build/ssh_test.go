package build

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/sys/unix"
)

// sshKeysTool builds internal/cmd/sshkeys, static, once for the tests.
var sshKeysTool = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "sshkeys-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "sshkeys")
	cmd := exec.Command("go", "build", "-o", out, "github.com/imgtool/imgtool/internal/cmd/sshkeys")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, &exec.Error{Name: "go build sshkeys: " + string(msg), Err: err}
	}
	return os.ReadFile(out)
})

// newSSHKey writes a new ed25519 private key (OpenSSH format) to dir
// and returns its file and its SHA256 fingerprint.
func newSSHKey(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return file, ssh.FingerprintSHA256(sp)
}

// startSSHAgent runs OpenSSH's ssh-agent on a socket in dir, holding the
// key files given (added with ssh-add), until the test ends.
func startSSHAgent(t *testing.T, dir string, keys ...string) string {
	t.Helper()
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatalf("ssh-agent (the tests need openssh-client): %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("ssh-agent did not make its socket in 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, k := range keys {
		add := exec.Command("ssh-add", k)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add %s: %v\n%s", k, err, out)
		}
	}
	return sock
}

// TestSSHMount: RUN --mount=type=ssh forwards OpenSSH's ssh-agent (the
// default id) and an agent imgtool serves from a key file (another id)
// to a program that lists the keys and signs with them; the first ssh
// mount is SSH_AUTH_SOCK; the socket and its mount point stay out of
// the layers; an optional mount without --ssh is left out; a required
// one names the missing id.
func TestSSHMount(t *testing.T) {
	tool, err := sshKeysTool()
	if err != nil {
		t.Fatal(err)
	}
	s := baseStore(t)
	keys := t.TempDir()
	agentKey, agentFP := newSSHKey(t, keys, "agent-key")
	deployKey, deployFP := newSSHKey(t, keys, "deploy-key")
	sock := startSSHAgent(t, keys, agentKey)
	deploy, err := SSHKeys(deployKey)
	if err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "sshkeys"), tool, 0o755); err != nil {
		t.Fatal(err)
	}
	withSSH := func(r *Request) {
		r.SSH = map[string]SSHAgent{"default": SSHSocket(sock), "deploy": deploy}
	}
	res, out, err := testBuild(t, s, ctxDir, `FROM base:1
COPY sshkeys /bin/sshkeys
RUN --mount=type=ssh /bin/sshkeys > /default-keys && echo "$SSH_AUTH_SOCK" > /default-sock
RUN --mount=type=ssh,id=deploy,target=/tmp/deploy.sock,mode=0666,uid=1000,required=true \
    --mount=type=ssh,target=/run/second.sock \
    /bin/sshkeys > /deploy-keys && echo "$SSH_AUTH_SOCK" > /deploy-sock && ls -ln /tmp/deploy.sock > /deploy-mode
RUN --mount=type=ssh,id=absent echo "$SSH_AUTH_SOCK" > /absent && ! test -e /run/buildkit/ssh_agent.0
`, withSSH)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if f := imageFile(t, s, res, "default-keys"); !strings.Contains(f.data, agentFP+" ") || strings.Contains(f.data, deployFP) {
		t.Errorf("keys of the default agent seen in RUN: %q, want %s only", f.data, agentFP)
	}
	if f := imageFile(t, s, res, "default-sock"); f.data != "/run/buildkit/ssh_agent.0\n" {
		t.Errorf("SSH_AUTH_SOCK: %q", f.data)
	}
	if f := imageFile(t, s, res, "deploy-keys"); !strings.Contains(f.data, deployFP+" ") || strings.Contains(f.data, agentFP) {
		t.Errorf("keys of the deploy agent seen in RUN: %q, want %s only", f.data, deployFP)
	}
	if f := imageFile(t, s, res, "deploy-sock"); f.data != "/tmp/deploy.sock\n" {
		t.Errorf("SSH_AUTH_SOCK with two ssh mounts: %q, want the first's target", f.data)
	}
	// The test executor maps root alone: uid 1000 shows as the overflow
	// id (TestSSHSocketOwner checks the owner).
	if f := imageFile(t, s, res, "deploy-mode"); !strings.HasPrefix(f.data, "srw-rw-rw-") {
		t.Errorf("mode=0666 gave %q", f.data)
	}
	if f := imageFile(t, s, res, "absent"); f.data != "/run/buildkit/ssh_agent.0\n" {
		t.Errorf("an optional ssh mount without --ssh: SSH_AUTH_SOCK %q", f.data)
	}
	for i := 1; i < layerCount(t, s, res); i++ {
		for name := range layerFiles(t, s, res, i) {
			if strings.HasPrefix(name, "run") || strings.HasPrefix(name, "tmp") {
				t.Errorf("layer %d holds %s", i, name)
			}
		}
	}

	_, _, err = testBuild(t, s, ctxDir, "FROM base:1\nRUN --mount=type=ssh,id=nope,required=true true\n", withSSH)
	if err == nil || !strings.Contains(err.Error(), `ssh agent "nope" is required`) || !strings.Contains(err.Error(), "--ssh nope") {
		t.Errorf("a required ssh id nobody gave: %v", err)
	}
	_, _, err = testBuild(t, s, ctxDir, "FROM base:1\nRUN --mount=type=ssh,source=/x true\n", withSSH)
	if err == nil || !strings.Contains(err.Error(), "takes no source") {
		t.Errorf("ssh mount with a source: %v", err)
	}
}

// TestSSHCacheKey: which agent or socket --ssh gives is not part of a
// RUN's key, as with secrets: a second build with another agent is
// CACHED.
func TestSSHCacheKey(t *testing.T) {
	s := baseStore(t)
	cache := t.TempDir()
	keys := t.TempDir()
	k1, _ := newSSHKey(t, keys, "one")
	k2, _ := newSSHKey(t, keys, "two")
	df := "FROM base:1\nRUN --mount=type=ssh echo ran > /ran\n"
	_, ran, _ := cachedBuild(t, s, cache, t.TempDir(), df, func(r *Request) {
		r.SSH = map[string]SSHAgent{"default": SSHSocket(startSSHAgent(t, t.TempDir(), k1))}
	})
	if len(ran) != 1 {
		t.Fatalf("first build ran %v", ran)
	}
	a2, err := SSHKeys(k2)
	if err != nil {
		t.Fatal(err)
	}
	_, ran, out := cachedBuild(t, s, cache, t.TempDir(), df, func(r *Request) { r.SSH = map[string]SSHAgent{"default": a2} })
	if len(ran) != 0 {
		t.Errorf("another agent ran %v again:\n%s", ran, out)
	}
}

// TestSSHAgentReadOnly: a RUN may list keys and sign, but not change the
// agent it is given (BuildKit's rule), over the socket the build serves.
func TestSSHAgentReadOnly(t *testing.T) {
	keys := t.TempDir()
	k, fp := newSSHKey(t, keys, "key")
	fromKeys, err := SSHKeys(k)
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]SSHAgent{
		"socket": SSHSocket(startSSHAgent(t, keys, k)),
		"keys":   fromKeys,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l, sock, err := listenSSH(context.Background(), dir, a, 0o600, 0, 0, false, func(err error) { t.Error(err) })
			if err != nil {
				t.Fatal(err)
			}
			defer l.close()
			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := agent.NewClient(conn)
			list, err := c.List()
			if err != nil || len(list) != 1 || ssh.FingerprintSHA256(list[0]) != fp {
				t.Fatalf("List: %v %v", list, err)
			}
			if err := c.RemoveAll(); err == nil {
				t.Error("RemoveAll went through")
			}
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			if err := c.Add(agent.AddedKey{PrivateKey: priv}); err == nil {
				t.Error("Add went through")
			}
			if list, err := c.List(); err != nil || len(list) != 1 {
				t.Errorf("the agent changed: %v %v", list, err)
			}
		})
	}
}

// TestSSHSocketOwner: the socket has the mode the mount asks for, and
// its uid and gid when the build may chown.
func TestSSHSocketOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to chown: run the suite as root (CI does: sudo make test)")
	}
	k, _ := newSSHKey(t, t.TempDir(), "key")
	a, err := SSHKeys(k)
	if err != nil {
		t.Fatal(err)
	}
	l, sock, err := listenSSH(context.Background(), t.TempDir(), a, 0o640, 1000, 50, true, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	var st unix.Stat_t
	if err := unix.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != unix.S_IFSOCK|0o640 || st.Uid != 1000 || st.Gid != 50 {
		t.Errorf("socket mode %o owner %d:%d", st.Mode, st.Uid, st.Gid)
	}
}

// TestSSHKeysErrors: key files that are not keys, or that need a
// passphrase, are refused with a message that says what to do.
func TestSSHKeysErrors(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	locked := filepath.Join(dir, "locked")
	mustWrite(t, locked, string(pem.EncodeToMemory(block)))
	garbage := filepath.Join(dir, "garbage")
	mustWrite(t, garbage, "not a key\n")
	huge := filepath.Join(dir, "huge")
	mustWrite(t, huge, strings.Repeat("x", maxSSHKey+1))
	for file, want := range map[string]string{
		locked:                       "passphrase-protected: add it to an ssh-agent",
		garbage:                      "ssh key " + garbage,
		huge:                         "not a private key",
		filepath.Join(dir, "absent"): "no such file",
	} {
		if _, err := SSHKeys(file); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SSHKeys(%s): %v, want %q", filepath.Base(file), err, want)
		}
	}
}
