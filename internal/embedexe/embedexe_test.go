package embedexe

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// busybox is the statically linked busybox the tests run as the carried
// executable (scripts/deps.sh installs it).
const busybox = "/bin/busybox"

func pack(t *testing.T, raw []byte) Exe {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return Exe{Name: "test-exe", Zstd: zw.EncodeAll(raw, nil), Digest: hex.EncodeToString(sum[:]), Size: int64(len(raw))}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func TestPublishOnceAndReuse(t *testing.T) {
	raw := []byte("#!/bin/sh\necho carried\n")
	e := pack(t, raw)
	dir := filepath.Join(t.TempDir(), "cache", "exe")
	// What another build left beside it goes; other files stay.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, strings.Repeat("ab", 32))
	keep := filepath.Join(dir, "README")
	for _, p := range []string{stale, keep} {
		if err := os.WriteFile(p, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p, err := e.Publish(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(dir, e.Digest) {
		t.Errorf("published at %s, want the digest's name", p)
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("published %q, %v; want %q", got, err, raw)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", st.Mode().Perm())
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("another build's file stayed: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a file not named by a digest went: %v", err)
	}
	ino := inode(t, p)
	if p2, err := e.Publish(dir); err != nil || p2 != p || inode(t, p) != ino {
		t.Errorf("second Publish = %s, %v (inode changed: %v); want the same file reused", p2, err, inode(t, p) != ino)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// A published file that is not whole, or that others could have written,
// is replaced rather than run.
func TestPublishReplacesUntrusted(t *testing.T) {
	raw := bytes.Repeat([]byte("imgtool"), 1000)
	e := pack(t, raw)
	for _, tc := range []struct {
		name    string
		content []byte
		mode    os.FileMode
	}{
		{"truncated", raw[:100], 0o755},
		{"group-writable", raw, 0o775},
		{"world-writable", raw, 0o757},
		{"not executable", raw, 0o644},
	} {
		dir := t.TempDir()
		p := filepath.Join(dir, e.Digest)
		if err := os.WriteFile(p, tc.content, tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		ino := inode(t, p)
		if _, err := e.Publish(dir); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, _ := os.ReadFile(p)
		if inode(t, p) == ino || !bytes.Equal(got, raw) {
			t.Errorf("%s: not replaced", tc.name)
		}
	}
}

// Content that does not match the digest and size it was built with is
// never published.
func TestPublishRefusesCorruptContent(t *testing.T) {
	raw := []byte("the carried executable")
	good := pack(t, raw)
	other := pack(t, []byte("something else entirely"))
	bad := map[string]Exe{
		"wrong content": {Name: "x", Zstd: other.Zstd, Digest: good.Digest, Size: good.Size},
		"wrong size":    {Name: "x", Zstd: good.Zstd, Digest: good.Digest, Size: good.Size - 1},
		"longer":        {Name: "x", Zstd: good.Zstd, Digest: good.Digest, Size: good.Size + 5},
		"not zstd":      {Name: "x", Zstd: raw, Digest: good.Digest, Size: good.Size},
		"no digest":     {Name: "x", Zstd: good.Zstd, Digest: "abc", Size: good.Size},
		"empty":         {Name: "x"},
	}
	for name, e := range bad {
		dir := t.TempDir()
		if p, err := e.Publish(dir); err == nil {
			t.Errorf("%s: published %s", name, p)
		}
		if left, _ := os.ReadDir(dir); len(left) > 0 {
			t.Errorf("%s: left %v", name, left)
		}
	}
}

// TestExec runs the carried executable the way imgtool registry does, in a
// child process (Exec replaces the process): from a cache directory, and
// from memory when no directory takes it.
func TestExec(t *testing.T) {
	if os.Getenv("EMBEDEXE_HELPER") != "" {
		return
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatalf("read %s (scripts/deps.sh installs busybox-static): %v", busybox, err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	packed := filepath.Join(t.TempDir(), "busybox.zst")
	e := pack(t, bb)
	if err := os.WriteFile(packed, e.Zstd, 0o600); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache")
	for name, dirs := range map[string]string{
		"cache":           cache,
		"memory fallback": "/proc/self/not-a-dir" + string(os.PathListSeparator) + "/proc/not-writable",
	} {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "EMBEDEXE_HELPER="+packed, "EMBEDEXE_DIGEST="+e.Digest, "EMBEDEXE_DIRS="+dirs)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		// busybox sh -c: the exit status and output are the carried
		// executable's own.
		if code != 7 || string(out) != "carried pid-same\n" {
			t.Errorf("%s: exit %d, output %q; want 7 and %q", name, code, out, "carried pid-same\n")
		}
	}
	if _, err := os.Stat(filepath.Join(cache, e.Digest)); err != nil {
		t.Errorf("not published in the cache: %v", err)
	}
}

// TestMain makes the test binary, started by TestExec with
// EMBEDEXE_HELPER set, the process that execs the carried executable, so
// that the exec replaces a process of its own rather than the test run.
func TestMain(m *testing.M) {
	if packed := os.Getenv("EMBEDEXE_HELPER"); packed != "" {
		execHelper(packed)
	}
	os.Exit(m.Run())
}

// execHelper execs busybox from its zstd packing at packed; it returns
// (exit 1, with the reason) only when the exec fails.
func execHelper(packed string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "exec helper:", err)
		os.Exit(1)
	}
	z, err := os.ReadFile(packed)
	if err != nil {
		fail(err)
	}
	bb, err := os.Stat(busybox)
	if err != nil {
		fail(err)
	}
	e := Exe{Name: "busybox", Zstd: z, Digest: os.Getenv("EMBEDEXE_DIGEST"), Size: bb.Size()}
	script := `[ $$ = ` + strconv.Itoa(os.Getpid()) + ` ] && echo carried pid-same; exit 7`
	fail(fmt.Errorf("Exec returned: %w", e.Exec(filepath.SplitList(os.Getenv("EMBEDEXE_DIRS")), []string{"sh", "-c", script}, nil)))
}

// TestValid: an Exe is valid only with content, a size, and a digest
// written as the published files are named (64 lower-case hex digits).
func TestValid(t *testing.T) {
	good := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		e    Exe
		want bool
	}{
		{Exe{Zstd: []byte{1}, Size: 1, Digest: good}, true},
		{Exe{Zstd: []byte{1}, Size: 1, Digest: strings.ToUpper(good)}, false},
		{Exe{Zstd: []byte{1}, Size: 1, Digest: good[1:]}, false},
		{Exe{Zstd: []byte{1}, Size: 1, Digest: good + "0"}, false},
		{Exe{Zstd: []byte{1}, Size: 1, Digest: good[:63] + "g"}, false},
		{Exe{Zstd: []byte{1}, Size: 1, Digest: "../" + good[3:]}, false},
		{Exe{Size: 1, Digest: good}, false},
		{Exe{Zstd: []byte{1}, Digest: good}, false},
	} {
		if got := tc.e.Valid(); got != tc.want {
			t.Errorf("Valid() with digest %q, size %d, %d bytes = %v", tc.e.Digest, tc.e.Size, len(tc.e.Zstd), got)
		}
	}
}
