package main_test

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// server is an `imgtool registry serve` process.
type server struct {
	addr string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
}

// startRegistry runs `imgtool registry serve` on a free loopback port with
// its data under root, and stops it (SIGTERM) when the test ends.
func startRegistry(t *testing.T, root string, extra ...string) *server {
	t.Helper()
	args := append([]string{"--root", root, "registry", "serve", "--addr", "127.0.0.1:0"}, extra...)
	s := &server{cmd: exec.Command(binary, args...)}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = (*lockedWriter)(s)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		t.Fatalf("registry serve printed no address: %v\n%s", err, s.stderr())
	}
	s.addr = strings.TrimSpace(line)
	t.Cleanup(func() { s.stop(t) })
	return s
}

type lockedWriter server

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.log.Write(p)
}

func (s *server) stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stop ends the server with SIGTERM, as an operator would, and checks it
// shuts down cleanly.
func (s *server) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("registry serve exited with %v after SIGTERM\n%s", err, s.stderr())
		}
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-done
		t.Errorf("registry serve did not stop within 30s of SIGTERM")
	}
}

// TestConformance runs the official OCI distribution-spec conformance
// suite (the version pinned as a tool in go.mod) against `imgtool registry
// serve` with every API and data set enabled, and wants 0 failures and no
// feature reported unsupported. The sparse data set (manifests whose blobs
// were never pushed) needs --allow-sparse; the default configuration runs
// everything else.
func TestConformance(t *testing.T) {
	dir := t.TempDir()
	suite := filepath.Join(dir, "conformance")
	build := exec.Command("go", "build", "-o", suite, "github.com/opencontainers/distribution-spec/conformance")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the conformance suite: %v\n%s", err, out)
	}
	t.Run("all data sets, --allow-sparse", func(t *testing.T) {
		conformance(t, suite, "true", "--allow-sparse")
	})
	t.Run("default flags", func(t *testing.T) {
		conformance(t, suite, "false")
	})
}

func conformance(t *testing.T, suite, sparse string, flags ...string) {
	srv := startRegistry(t, filepath.Join(t.TempDir(), "root"), append(flags, "--access-log=false")...)
	runConformance(t, suite, srv.addr, sparse)
}

// runConformance runs the suite against the registry at addr.
func runConformance(t *testing.T, suite, addr, sparse string) {
	dir := t.TempDir()
	results := filepath.Join(dir, "results")
	run := exec.Command(suite)
	run.Dir = dir
	run.Env = append(os.Environ(),
		"OCI_REGISTRY="+addr, "OCI_TLS=disabled", "OCI_RESULTS_DIR="+results,
		"OCI_VERSION=dev", // enables upload cancel, digest headers and tag parameters
		"OCI_TEST_PULL=1", "OCI_TEST_PUSH=1", "OCI_TEST_CONTENT_DISCOVERY=1", "OCI_TEST_CONTENT_MANAGEMENT=1",
		"OCI_HIDE_SKIPPED_WORKFLOWS=0", "OCI_DATA_SPARSE="+sparse, "OCI_DATA_SHA512=true",
		"OCI_API_BLOBS_UPLOAD_CANCEL=true", "OCI_API_MANIFESTS_TAG_PARAM=true",
		"OCI_API_BLOBS_MOUNT_ANONYMOUS=true", "OCI_API_REFERRER=true")
	out, err := run.CombinedOutput()
	if err != nil {
		t.Errorf("conformance suite: %v\n%s", err, out)
	}
	for _, bad := range []string{": Fail", ": Skip", ": Disabled", "unsupported"} {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, bad) && !(sparse == "false" && strings.Contains(line, "Sparse Manifests")) {
				t.Errorf("conformance: %s", strings.TrimSpace(line))
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(results, "junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var junit struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Errors   int `xml:"errors,attr"`
			Skipped  int `xml:"skipped,attr"`
			Disabled int `xml:"disabled,attr"`
			Cases    []struct {
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(raw, &junit); err != nil {
		t.Fatal(err)
	}
	tests, failed, skipped := 0, 0, 0
	for _, s := range junit.Suites {
		tests += s.Tests
		failed += s.Failures + s.Errors
		skipped += s.Skipped + s.Disabled
		for _, c := range s.Cases {
			if c.Skipped != nil {
				skipped++
			}
		}
	}
	t.Logf("OCI conformance (sparse data %s): %d passed, %d failed, %d skipped of %d", sparse, tests-failed-skipped, failed, skipped, tests)
	if tests < 950 || failed != 0 || skipped != 0 {
		t.Errorf("conformance: want 0 failed and 0 skipped of over 950 checks\n%s", out)
	}
}

// TestRegistryServeShutsDownGracefully sends SIGTERM while an upload is in
// flight: the request completes, new connections are refused, the process
// exits 0, and every request got one access-log line.
func TestRegistryServeShutsDownGracefully(t *testing.T) {
	srv := startRegistry(t, t.TempDir())
	loc := postUpload(t, srv.addr, "grace/app")
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPatch, loc, pr)
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("in-flight PATCH: %v", err)
		}
		done <- resp
	}()
	pw.Write([]byte("first half "))
	time.Sleep(200 * time.Millisecond) // let the request reach the handler
	srv.cmd.Process.Signal(syscall.SIGTERM)
	refused := false
	for range 100 { // the listener closes soon after the signal
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + srv.addr + "/v2/")
		if err != nil {
			refused = true
			break
		}
		resp.Body.Close()
		time.Sleep(50 * time.Millisecond)
	}
	if !refused {
		t.Error("new connections still accepted 5s after SIGTERM")
	}
	pw.Write([]byte("second half"))
	pw.Close()
	if resp := <-done; resp == nil || resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != "0-21" {
		t.Fatalf("in-flight PATCH after SIGTERM: %+v", resp)
	}
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, srv.stderr())
	}
	log := srv.stderr()
	for _, want := range []string{`method=POST path=/v2/grace/app/blobs/uploads/ status=202`, `method=PATCH`, `status=202`} {
		if !strings.Contains(log, want) {
			t.Errorf("access log lacks %q:\n%s", want, log)
		}
	}
}

func TestRegistryServeBadInput(t *testing.T) {
	c := newCLI(t)
	c.fail(2, "registry", "serve", "extra-arg")
	c.fail(1, "registry", "serve", "--addr", "not-an-address")
}
