package build

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// SSHAgent is what RUN --mount=type=ssh,id=ID forwards into the RUN: the
// build listens on a socket of its own, mounted at the target, and hands
// every connection made to it to Serve, which speaks the ssh-agent
// protocol on it until the client or ctx ends it.
type SSHAgent interface {
	Serve(ctx context.Context, conn net.Conn) error
}

// maxSSHKey bounds a key file read for SSHKeys (BuildKit reads 100 KiB).
const maxSSHKey = 100 << 10

// SSHSocket forwards to the ssh-agent listening on the Unix socket path
// (docker build --ssh default=$SSH_AUTH_SOCK): each connection from the
// RUN is a new connection to it. As in BuildKit, the RUN may list keys
// and sign, not add, remove or lock.
func SSHSocket(path string) SSHAgent { return socketAgent(path) }

type socketAgent string

func (s socketAgent) Serve(ctx context.Context, conn net.Conn) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	up, err := d.DialContext(ctx, "unix", string(s))
	if err != nil {
		return fmt.Errorf("connect to ssh agent %s: %w", string(s), err)
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { up.Close() })
	defer stop()
	return serveAgent(ctx, conn, func(req []byte) ([]byte, error) {
		if err := writeAgentMsg(up, req); err != nil {
			return nil, fmt.Errorf("ssh agent %s: %w", string(s), err)
		}
		reply, err := readAgentMsg(up)
		if err != nil {
			return nil, fmt.Errorf("ssh agent %s: %w", string(s), err)
		}
		return reply, nil
	})
}

// SSHKeys serves the private keys in files from an agent inside imgtool
// (docker build --ssh ID=KEYFILE,...). A passphrase-protected key is an
// error: imgtool asks for no passphrase; an ssh-agent holding the key
// does the asking.
func SSHKeys(files ...string) (SSHAgent, error) {
	ring := agent.NewKeyring()
	for _, f := range files {
		key, err := readSSHKey(f)
		if err != nil {
			return nil, err
		}
		if err := ring.Add(agent.AddedKey{PrivateKey: key, Comment: f}); err != nil {
			return nil, fmt.Errorf("ssh key %s: %w", f, err)
		}
	}
	ext, ok := ring.(agent.ExtendedAgent)
	if !ok {
		return nil, errors.New("the ssh keyring does not sign with flags")
	}
	return keyringAgent{ext}, nil
}

func readSSHKey(file string) (any, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSSHKey+1))
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", file, err)
	}
	if len(data) > maxSSHKey {
		return nil, fmt.Errorf("ssh key %s: more than %d bytes: not a private key", file, maxSSHKey)
	}
	key, err := ssh.ParseRawPrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("ssh key %s is passphrase-protected: add it to an ssh-agent (ssh-add %s) and give --ssh default instead", file, file)
	}
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", file, err)
	}
	return key, nil
}

// keyringAgent answers the two requests serveAgent lets through from
// keys it holds.
type keyringAgent struct{ ring agent.ExtendedAgent }

func (k keyringAgent) Serve(ctx context.Context, conn net.Conn) error {
	return serveAgent(ctx, conn, k.answer)
}

// Messages of the agent protocol (draft-miller-ssh-agent), as the agent
// package spells them (unexported there).
// The answers are 12 (identities) and 14 (signature), in the sshtype
// tags below.
const (
	agentFailure     = 5
	agentRequestIDs  = 11
	agentSignRequest = 13
)

type signRequest struct {
	KeyBlob []byte `sshtype:"13"`
	Data    []byte
	Flags   uint32
}

func (k keyringAgent) answer(req []byte) ([]byte, error) {
	failure := []byte{agentFailure}
	switch req[0] {
	case agentRequestIDs:
		keys, err := k.ring.List()
		if err != nil {
			return failure, nil
		}
		var b []byte
		for _, key := range keys {
			b = append(b, ssh.Marshal(struct {
				Blob    []byte
				Comment string
			}{key.Blob, key.Comment})...)
		}
		return ssh.Marshal(struct {
			N    uint32 `sshtype:"12"`
			Keys []byte `ssh:"rest"`
		}{uint32(len(keys)), b}), nil
	case agentSignRequest:
		var r signRequest
		if err := ssh.Unmarshal(req, &r); err != nil {
			return failure, nil
		}
		pub, err := ssh.ParsePublicKey(r.KeyBlob)
		if err != nil {
			return failure, nil
		}
		sig, err := k.ring.SignWithFlags(pub, r.Data, agent.SignatureFlags(r.Flags))
		if err != nil {
			return failure, nil
		}
		return ssh.Marshal(struct {
			Sig []byte `sshtype:"14"`
		}{ssh.Marshal(sig)}), nil
	}
	return failure, nil
}

// maxAgentMsg bounds one message, as OpenSSH's agent does (AGENT_MAX_LEN).
const maxAgentMsg = 256 << 10

// serveAgent reads the requests of the RUN's client on conn until it
// hangs up or ctx ends, and lets through to answer only listing keys and
// signing: what a build runs must not change the user's agent, as
// BuildKit rules. Written by hand rather than with agent.ServeAgent,
// which logs every refused request to the process's standard logger.
func serveAgent(ctx context.Context, conn net.Conn, answer func(req []byte) ([]byte, error)) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	for {
		req, err := readAgentMsg(conn)
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ssh agent client: %w", err)
		}
		reply := []byte{agentFailure}
		if req[0] == agentRequestIDs || req[0] == agentSignRequest {
			if reply, err = answer(req); err != nil {
				return err
			}
		}
		if err := writeAgentMsg(conn, reply); err != nil {
			return nil // the client went away
		}
	}
}

func readAgentMsg(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size == 0 || size > maxAgentMsg {
		return nil, fmt.Errorf("agent message of %d bytes", size)
	}
	msg := make([]byte, size)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeAgentMsg(w io.Writer, msg []byte) error {
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(msg)), uint32(len(msg)))
	_, err := w.Write(append(buf, msg...))
	return err
}

// sshListener is one RUN --mount=type=ssh's socket: it serves every
// connection until close, which also ends the connections still open.
type sshListener struct {
	l      *net.UnixListener
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// listenSSH makes a socket in dir serving a, with mode (and, when chown
// is set, owner) as the mount asks, and returns its path. Errors of a
// connection go to warn.
func listenSSH(ctx context.Context, dir string, a SSHAgent, mode os.FileMode, uid, gid int, chown bool, warn func(error)) (*sshListener, string, error) {
	sock := filepath.Join(dir, "agent.sock")
	l, err := listenUnix(dir, "agent.sock")
	if err != nil {
		return nil, "", fmt.Errorf("listen for ssh agent: %w", err)
	}
	err = os.Chmod(sock, mode)
	if err == nil && chown {
		err = os.Lchown(sock, uid, gid)
	}
	if err != nil {
		l.Close()
		return nil, "", fmt.Errorf("ssh agent socket: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &sshListener{l: l, cancel: cancel}
	s.wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return // closed
			}
			s.wg.Go(func() {
				defer conn.Close()
				if err := a.Serve(ctx, conn); err != nil && ctx.Err() == nil {
					warn(err)
				}
			})
		}
	})
	return s, sock, nil
}

// listenUnix listens on dir/name. A socket's path must fit in 108 bytes,
// and a data root can be deep: bind through /proc/self/fd/N, a short
// name for dir that Linux resolves.
func listenUnix(dir, name string) (*net.UnixListener, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	addr := fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// Close would unlink the short name, gone with d: the build's
	// temporary directory goes instead.
	l.SetUnlinkOnClose(false)
	return l, nil
}

func (s *sshListener) close() {
	s.l.Close()
	s.cancel()
	s.wg.Wait()
}
