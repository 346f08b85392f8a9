package main_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestRegistryServeCollects: with --gc-interval the server collects by
// itself while it serves: a deleted image's blobs go, the tagged one
// still pulls, and /metrics counts the runs and shows the last one's time.
func TestRegistryServeCollects(t *testing.T) {
	root := t.TempDir()
	// The images are pushed before collections with no grace start: a
	// push racing such a collection may fail and need a retry (gc.go).
	first := startRegistry(t, root, "--access-log=false")
	keep := pushRandom(t, first.addr+"/gc/app:1")
	drop := pushRandom(t, first.addr+"/gc/app:2")
	if err := remote.Delete(mustRef(t, first.addr+"/gc/app@"+digestOf(t, drop))); err != nil {
		t.Fatal(err)
	}
	first.stop(t)
	srv := startRegistry(t, root, "--access-log=false", "--gc-interval", "200ms", "--gc-grace", "0s")
	layers, _ := drop.Layers()
	ld, _ := layers[0].Digest()
	blob := "/v2/gc/app/blobs/" + ld.String()
	runs := regexp.MustCompile(`imgtool_registry_gc_runs_total\{result="ok"\} ([0-9]+)`)
	collected := false
	for i := 0; i < 100 && !collected; i++ { // 20 s at most
		time.Sleep(200 * time.Millisecond)
		_, body := get(t, http.MethodGet, "http://"+srv.addr+"/metrics", "")
		m := runs.FindStringSubmatch(body)
		collected = m != nil && m[1] != "0" && request(t, http.MethodHead, srv.addr, blob) == http.StatusNotFound
	}
	if !collected {
		_, body := get(t, http.MethodGet, "http://"+srv.addr+"/metrics", "")
		t.Fatalf("no collection freed %s within 20 s; gc metrics:\n%s\nserver log:\n%s", blob, grepLines(body, "gc_"), srv.stderr())
	}
	pullAndVerify(t, mustRef(t, srv.addr+"/gc/app:1"), keep)
	if !strings.Contains(srv.stderr(), "garbage collection") {
		t.Errorf("the server logged no collection:\n%s", srv.stderr())
	}
	_, body := get(t, http.MethodGet, "http://"+srv.addr+"/metrics", "")
	if !strings.Contains(body, "imgtool_registry_gc_last_run_timestamp_seconds ") {
		t.Errorf("/metrics lacks the last collection's time:\n%s", grepLines(body, "gc_"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
