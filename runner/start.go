package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Container is a container whose init has started and waits for the
// rest of its Spec. Start and Container.Run split Run in two so that a
// caller can overlap the init's start (an exec and a Go runtime start,
// the larger part of a short run) with its own remaining preparation,
// such as finding the image and leasing its root filesystem.
type Container struct {
	p       *proc
	mapping idMapping
	fixed   Spec // what Start used: Network, TTY and Init
	done    bool
}

// Start starts the init of a container with s's Network, TTY and Init,
// and with stdio; the other fields of s are not used yet. Run gives the
// container its command; Close discards it instead. Cancelling ctx kills
// every process of the container.
func Start(ctx context.Context, s Spec, stdio Stdio) (*Container, error) {
	switch s.Network {
	case "", NetworkHost, NetworkNone:
	default:
		return nil, fmt.Errorf("network %q: want none or host", s.Network)
	}
	mapping, notice := chooseMapping(os.Geteuid(), os.Getegid())
	if notice != "" && s.Notice != nil {
		fmt.Fprintln(s.Notice, notice)
	}
	p, err := start(ctx, &s, stdio, mapping, s.Init)
	if err != nil && s.Init != "" {
		p, err = start(ctx, &s, stdio, mapping, "")
	}
	if err != nil {
		return nil, err
	}
	if mapping.Helper {
		// The init exec'd before these maps existed, so it holds no
		// capabilities yet: it execs itself once more when it sees Reexec.
		if err := mapping.write(p.pid); err != nil {
			p.kill()
			p.close()
			return nil, fmt.Errorf("map ids into the user namespace: %w", err)
		}
	}
	return &Container{p: p, mapping: mapping, fixed: Spec{Network: s.Network, TTY: s.TTY, Init: s.Init}}, nil
}

// Close kills and reaps an init that Run was not called on; after Run it
// does nothing.
func (c *Container) Close() {
	if c.done {
		return
	}
	c.done = true
	c.p.kill()
	c.p.close()
}

// Run runs s in the container, as the package-level Run does. s's
// Network, TTY and Init must be those given to Start. A container runs
// one command: Run cannot be called again.
func (c *Container) Run(s Spec) (int, error) {
	if c.done {
		return -1, errors.New("the container has already run or been closed")
	}
	if err := s.validate(); err != nil {
		c.Close()
		return -1, err
	}
	if s.Network != c.fixed.Network || s.TTY != c.fixed.TTY || s.Init != c.fixed.Init {
		c.Close()
		return -1, errors.New("the spec's network, terminal or init differ from those the container was started with")
	}
	c.done = true
	p := c.p
	defer p.close()
	state, err := s.scratch()
	if err != nil {
		p.kill()
		return -1, err
	}
	if s.Mountpoint == "" {
		// The init mounts a tmpfs over it, so it stays empty on disk.
		defer os.Remove(state)
	}
	hostname := s.Hostname
	if hostname == "" {
		hostname = randomHostname()
	}
	cfg := config{
		Dir: s.Dir, Rootfs: s.Rootfs, Lower: s.Lower, Upper: s.Upper, Work: s.Work, ReadOnly: s.ReadOnly, Args: s.Args, Env: s.Env, Cwd: s.Cwd, User: s.User,
		Hostname: hostname, Network: s.Network, Mounts: s.Mounts, Hosts: s.Hosts, TTY: s.TTY,
		State: state, SetGroups: c.mapping.setGroups(), UnmappedUserAsRoot: s.UnmappedUserAsRoot,
		Reexec: c.mapping.Helper,
	}
	if p.term != nil {
		cfg.Winsize = p.term.size()
	}
	if err := cfg.encode().send(p.cfgW); err != nil {
		p.kill()
		return -1, fmt.Errorf("send config to the container init: %w", err)
	}
	p.cfgW.Close()
	if p.term != nil {
		// The init sends the terminal before the command starts, or
		// closes the socket when setup fails before that.
		if terr := p.term.receive(); terr != nil {
			p.term.sock.Close()
		}
	}
	st, err := readStatus(p.statusR)
	if err != nil || st.Kind != "ok" {
		code := p.wait()
		switch {
		case err != nil:
			return -1, fmt.Errorf("%w: the container init exited with status %d before the command started (%v)", ErrSetup, code, err)
		case st.Kind == "overlay":
			return -1, fmt.Errorf("%w: %s", ErrNoOverlay, st.Msg)
		case st.Kind == "exec":
			return st.Code, fmt.Errorf("%w: %s", ErrExec, st.Msg)
		default:
			return -1, fmt.Errorf("%w: %s", ErrSetup, st.Msg)
		}
	}
	go p.forward(s.Signals)
	if p.detachable() {
		// The init reports the status once the container is gone; its
		// own exit, which unmounts everything, need not be waited for.
		if st, err := readStatus(p.statusR); err == nil && st.Kind == "exit" {
			go p.wait()
			return st.Code, nil
		}
	}
	return p.wait(), nil
}
