package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
)

// maxGitOutput bounds what is kept of a git command's output (ls-remote
// of a hostile server may be endless); errors keep the end of stderr.
const maxGitOutput = 1 << 20

// git runs a git command for g: in the caller's environment, and so with
// the user's configuration and credential helpers as for docker build,
// unless g.env (ADD's isolation) replaces them; with g's Authorization
// header, if any, as configuration that only git's environment holds.
func (g GitSource) git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	env := append(append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C"), g.env...)
	env = withGitConfig(env, g.auth.config())
	var hide []string
	if g.auth != nil {
		hide = g.auth.hide
	}
	out, err := runGit(ctx, dir, env, hide, args...)
	if err != nil {
		return nil, g.auth.explain(g.Remote, err)
	}
	return out, nil
}

// runGit runs git in dir with env as its environment, with no terminal
// to prompt on (a session of its own, so that ssh cannot open /dev/tty
// either), and never the ext:: transport, whatever the configuration
// says. Its messages show none of hide, nor the passwords of URLs.
func runGit(ctx context.Context, dir string, env, hide []string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return nil, errors.New("git sources need the git command: install it (Debian: apt-get install git)")
	}
	cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "protocol.ext.allow=never"}, args...)...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdout := &boundedBuffer{max: maxGitOutput}
	stderr := &boundedBuffer{max: 4 << 10, tail: true}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// git's message, on one line: the error is the last line users see.
		msg := strings.Join(strings.Fields(stderr.String()), " ")
		if msg == "" {
			return nil, fmt.Errorf("git %s: %w", gitVerb(args), err)
		}
		return nil, fmt.Errorf("git %s: %s", gitVerb(args), redactAll(msg, hide...))
	}
	return stdout.Bytes(), nil
}

// gitVerb is the git command args run, after any -c NAME=VALUE.
func gitVerb(args []string) string {
	for len(args) > 1 && args[0] == "-c" {
		args = args[2:]
	}
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// redactAll hides passwords of URLs in git's messages, and secrets.
func redactAll(msg string, secrets ...string) string {
	// The longest first: a token is part of the header that holds it.
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	words := strings.Fields(msg)
	for _, w := range words {
		w = strings.Trim(w, `'".,:`)
		if r := redact(w); r != w {
			msg = strings.ReplaceAll(msg, w, r)
		}
	}
	return msg
}

// boundedBuffer keeps at most max bytes: the first, or with tail the
// last.
type boundedBuffer struct {
	bytes.Buffer
	max  int
	tail bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if b.tail {
		b.Buffer.Write(p)
		if over := b.Len() - b.max; over > 0 {
			b.Next(over)
		}
		return n, nil
	}
	if room := b.max - b.Len(); room < len(p) {
		p = p[:max(room, 0)]
	}
	b.Buffer.Write(p)
	return n, nil
}
