package main_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// TestConcurrentProcessesShareAStore runs pulls, tags and prunes as
// separate processes on one store at once: no update may be lost, and
// prune must not take blobs from a pull in flight.
func TestConcurrentProcessesShareAStore(t *testing.T) {
	reg := newRegistry(t, nil)
	const n = 6
	want := map[string]string{}
	for i := range n {
		ref := fmt.Sprintf("%s/c/app%d:1", reg, i)
		want[ref] = digestOf(t, pushRandom(t, ref))
		want[fmt.Sprintf("localhost/alias%d:1", i)] = want[ref]
	}
	c := newCLI(t)
	var wg sync.WaitGroup
	errs := make(chan string, 3*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := fmt.Sprintf("%s/c/app%d:1", reg, i)
			for _, args := range [][]string{{"pull", ref}, {"tag", ref, fmt.Sprintf("localhost/alias%d:1", i)}} {
				if r := c.run(nil, args...); r.code != 0 {
					errs <- fmt.Sprintf("%v: %s", args, r.stderr)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 3 {
			if r := c.run(nil, "prune"); r.code != 0 {
				errs <- "prune: " + r.stderr
			}
		}
	}()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	got := c.images()
	if len(got) != len(want) {
		t.Errorf("store has %d images, want %d: %v", len(got), len(want), got)
	}
	for ref, d := range want {
		if got[ref].Digest != d {
			t.Errorf("%s: %q, want %s", ref, got[ref].Digest, d)
		}
	}
	// Every image is whole: saving reads and verifies every blob.
	args := []string{"save", "--format", "oci", "-o", filepath.Join(t.TempDir(), "all.tar")}
	for ref := range want {
		args = append(args, ref)
	}
	c.ok(args...)
}
