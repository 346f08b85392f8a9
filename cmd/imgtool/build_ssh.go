//go:build !imgtool_lean

package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/imgtool/imgtool/build"
)

// sshAgents parses --ssh as buildx does: default or ID alone forwards
// the agent at $SSH_AUTH_SOCK; ID=SOCKET forwards that agent;
// ID=KEYFILE[,KEYFILE...] serves those keys from an agent inside imgtool.
func sshAgents(list []string) (map[string]build.SSHAgent, error) {
	out := map[string]build.SSHAgent{}
	for _, spec := range list {
		id, paths, _ := strings.Cut(spec, "=")
		if id == "" {
			return nil, usageError{fmt.Errorf("--ssh %q: want default, ID, or ID=SOCKET|KEYFILE[,KEYFILE...]", spec)}
		}
		if _, dup := out[id]; dup {
			return nil, usageError{fmt.Errorf("--ssh %q: id %s given twice", spec, id)}
		}
		a, err := sshAgent(id, paths)
		if err != nil {
			return nil, err
		}
		out[id] = a
	}
	return out, nil
}

func sshAgent(id, paths string) (build.SSHAgent, error) {
	if paths == "" {
		paths = os.Getenv("SSH_AUTH_SOCK")
		if paths == "" {
			return nil, fmt.Errorf("--ssh %s: SSH_AUTH_SOCK is not set: start an agent (eval $(ssh-agent) && ssh-add) or give --ssh %s=KEYFILE", id, id)
		}
	}
	var keys []string
	socket := ""
	for _, p := range strings.Split(paths, ",") {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("--ssh %s: %w", id, err)
		}
		if fi.Mode()&os.ModeSocket == 0 {
			keys = append(keys, p)
			continue
		}
		if socket != "" {
			return nil, usageError{fmt.Errorf("--ssh %s: one agent socket at most", id)}
		}
		socket = p
	}
	switch {
	case socket != "" && len(keys) > 0:
		return nil, usageError{errors.New("--ssh " + id + ": give an agent socket or key files, not both")}
	case socket != "":
		return build.SSHSocket(socket), nil
	}
	a, err := build.SSHKeys(keys...)
	if err != nil {
		return nil, fmt.Errorf("--ssh %s: %w", id, err)
	}
	return a, nil
}
