// Command sshkeys lists the keys of the ssh-agent at $SSH_AUTH_SOCK, as
// `ssh-add -l` does (SHA256 fingerprint and comment, one a line), and
// has the agent sign with each, checking the signature. The build tests
// copy it, built static, into images made of busybox, which has no
// ssh-add, to see what RUN --mount=type=ssh forwards.
package main

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sshkeys:", err)
		os.Exit(1)
	}
}

func run() error {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return fmt.Errorf("SSH_AUTH_SOCK is not set")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	defer conn.Close()
	a := agent.NewClient(conn)
	keys, err := a.List()
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	if len(keys) == 0 {
		fmt.Println("The agent has no identities.")
	}
	data := []byte("signed inside a RUN")
	for _, k := range keys {
		sig, err := a.Sign(k, data)
		if err != nil {
			return fmt.Errorf("sign with %s: %w", k.Comment, err)
		}
		if err := k.Verify(data, sig); err != nil {
			return fmt.Errorf("signature of %s: %w", k.Comment, err)
		}
		fmt.Printf("%s %s (%s)\n", ssh.FingerprintSHA256(k), k.Comment, k.Type())
	}
	return nil
}
