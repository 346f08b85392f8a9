package runner_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/imgtool/imgtool/runner"
)

// Start then Run is Run, with the caller's work in between; a container
// runs one command, with the network and terminal it was started with,
// and Close discards one that never runs.
func TestStartThenRun(t *testing.T) {
	dir := newRootfs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	spec := runner.Spec{Dir: dir, Env: []string{"PATH=/bin"}, Args: sh("echo started first; exit 3")}
	c, err := runner.Start(ctx, runner.Spec{}, runner.Stdio{Stdout: &out})
	must(t, err)
	time.Sleep(100 * time.Millisecond) // the caller's own preparation
	if code, err := c.Run(spec); err != nil || code != 3 || out.String() != "started first\n" {
		t.Fatalf("got %d, %v, %q", code, err, out.String())
	}
	if _, err := c.Run(spec); err == nil {
		t.Error("a second Run on one container was accepted")
	}
	c.Close() // after Run: nothing to do

	c, err = runner.Start(ctx, runner.Spec{}, runner.Stdio{})
	must(t, err)
	none := spec
	none.Network = runner.NetworkNone
	if _, err := c.Run(none); err == nil {
		t.Error("Run with another network than Start's was accepted")
	}

	c, err = runner.Start(ctx, runner.Spec{}, runner.Stdio{})
	must(t, err)
	c.Close()
	if _, err := c.Run(spec); err == nil {
		t.Error("Run after Close was accepted")
	}
	if _, err := runner.Start(ctx, runner.Spec{Network: "bridge"}, runner.Stdio{}); err == nil {
		t.Error("Start accepted an unknown network")
	}
}
