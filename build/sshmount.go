package build

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// ssh forwards the agent --ssh gave for the mount's id (default
// "default") on a socket of the build's own, bind-mounted at the target
// (default /run/buildkit/ssh_agent.N, N counting the RUN's ssh mounts).
// The first ssh mount of a RUN is its SSH_AUTH_SOCK unless ENV sets one,
// as in BuildKit. Like a secret, the socket lives outside the tree, and
// its mount point is removed after the run: the layer never holds it,
// and the step's key holds the mount's spelling only (mountKey).
func (m *mounter) ssh(ctx context.Context, mnt *instructions.Mount, target string, env *[]string) error {
	if mnt.Source != "" {
		return fmt.Errorf("--mount=type=ssh takes no source")
	}
	id := cmp.Or(mnt.CacheID, "default")
	if target == "" {
		target = fmt.Sprintf("/run/buildkit/ssh_agent.%d", m.sshMounts)
	}
	m.sshMounts++
	if m.sshMounts == 1 && !hasEnv(*env, "SSH_AUTH_SOCK") {
		*env = append(*env, "SSH_AUTH_SOCK="+target)
	}
	a, ok := m.s.r.req.SSH[id]
	if !ok {
		if mnt.Required {
			return fmt.Errorf("ssh agent %q is required; give it with --ssh %s (the agent at $SSH_AUTH_SOCK) or --ssh %s=SOCKET|KEYFILE[,KEYFILE...]", id, id, id)
		}
		return nil // optional: the RUN goes without, as in BuildKit
	}
	dir, err := m.s.r.tempDir("ssh-")
	if err != nil {
		return err
	}
	mode, uid, gid := os.FileMode(0o600), 0, 0
	if mnt.Mode != nil {
		mode = os.FileMode(*mnt.Mode) & os.ModePerm
	}
	if mnt.UID != nil {
		uid = int(*mnt.UID)
	}
	if mnt.GID != nil {
		gid = int(*mnt.GID)
	}
	warn := func(err error) { m.s.r.progress.printf("[Warning] ssh agent %q: %v\n", id, err) }
	l, sock, err := listenSSH(ctx, dir, a, mode, uid, gid, !m.s.r.rootless, warn)
	if err != nil {
		return err
	}
	m.agents = append(m.agents, l)
	return m.mount(Mount{Type: "bind", Source: sock, Target: target}, false)
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}
