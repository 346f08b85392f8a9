package registry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestParseHtpasswd(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	h := string(hash)
	for _, tc := range []struct {
		name, file string
		users      int
		err        string
	}{
		{"one user", "alice:" + h + "\n", 1, ""},
		{"comments, blank lines, CRLF", "# users\n\nalice:" + h + "\r\nbob:" + h + "\n", 2, ""},
		{"empty", "", 0, ""},
		{"no colon", "alice\n", 0, "line 1: want NAME:HASH"},
		{"MD5 crypt refused", "alice:$apr1$abc$def\n", 0, `line 1: user "alice": not a bcrypt hash`},
		{"SHA-1 refused", "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", 0, "not a bcrypt hash"},
		{"duplicate user", "alice:" + h + "\nalice:" + h + "\n", 0, `line 2: user "alice" listed twice`},
		{"empty name", ":" + h + "\n", 0, "line 1: empty user name"},
		{"space in name", "al ice:" + h + "\n", 0, "white space"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users, err := parseHtpasswd([]byte(tc.file))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(users) != tc.users {
				t.Fatalf("%d users, %v; want %d", len(users), err, tc.users)
			}
		})
	}
}

func TestHtpasswdAuthenticateAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	if _, err := SetUser(path, "alice", "first", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	h, err := OpenHtpasswd(path, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	check := func(user, pw string, want bool) {
		t.Helper()
		if ok, err := h.Authenticate(context.Background(), user, pw); ok != want || err != nil {
			t.Fatalf("Authenticate(%s, %s) = %v, %v; want %v", user, pw, ok, err, want)
		}
	}
	check("alice", "first", true)
	check("alice", "first", true) // from the verified cache
	check("alice", "wrong", false)
	check("nobody", "first", false)

	// A password change takes effect at once, and the cached one is dropped.
	if existed, err := SetUser(path, "alice", "second", bcrypt.MinCost); err != nil || !existed {
		t.Fatalf("SetUser existing: %v %v", existed, err)
	}
	check("alice", "first", false)
	check("alice", "second", true)
	if _, err := SetUser(path, "bob", "pw", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	check("bob", "pw", true)
	if err := RemoveUser(path, "bob"); err != nil {
		t.Fatal(err)
	}
	check("bob", "pw", false)
	if err := RemoveUser(path, "bob"); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("removing a missing user: %v", err)
	}

	// A broken file keeps the previous users in force, and says so once.
	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("alice", "second", true)
	check("alice", "second", true)
	if n := strings.Count(log.String(), "htpasswd file unusable"); n != 1 {
		t.Errorf("broken file logged %d times, want once:\n%s", n, log.String())
	}
	if _, err := SetUser(path, "carol", "pw", bcrypt.MinCost); err == nil {
		t.Error("SetUser rewrote a file it could not parse")
	}
}

func TestSetUserKeepsOtherLinesAndMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "htpasswd")
	if _, err := SetUser(path, "alice", "pw", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new htpasswd file: %v %v, want mode 0600", fi.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append([]byte("# managed by hand\n"), data...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := SetUser(path, "bob", "pw", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := RemoveUser(path, "alice"); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || lines[0] != "# managed by hand" || !strings.HasPrefix(lines[1], "bob:$2") {
		t.Errorf("file after edits:\n%s", data)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode changed to %v", fi.Mode())
	}
	for _, bad := range []struct{ user, pw string }{{"a:b", "pw"}, {"", "pw"}, {"alice", ""}, {"alice", strings.Repeat("x", 73)}} {
		if _, err := SetUser(path, bad.user, bad.pw, bcrypt.MinCost); err == nil {
			t.Errorf("SetUser(%q, %d-byte password) accepted", bad.user, len(bad.pw))
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
		t.Error("refused edits changed the file")
	}
}

// FuzzParseHtpasswd: any file either is refused or yields users whose
// names and hashes pass the same checks, and writing them back out parses
// to the same users.
func FuzzParseHtpasswd(f *testing.F) {
	f.Add([]byte("alice:$2y$05$abcdefghijklmnopqrstuu5Nq1Yq1Yq1Yq1Yq1Yq1Yq1Yq1Yq1Yq\n# c\n\n"))
	f.Add([]byte("bob:$apr1$x$y\n"))
	f.Add([]byte(":\r\n:::\n#\x00"))
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	f.Add([]byte("carol:" + string(hash) + "\r\ndave:" + string(hash)))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parseHtpasswd(data)
		if err != nil {
			return
		}
		var out strings.Builder
		for name, hash := range users {
			if validUserName(name) != nil {
				t.Fatalf("accepted user name %q", name)
			}
			if _, err := bcrypt.Cost(hash); err != nil {
				t.Fatalf("accepted hash %q", hash)
			}
			out.WriteString(name + ":" + string(hash) + "\n")
		}
		again, err := parseHtpasswd([]byte(out.String()))
		if err != nil || len(again) != len(users) {
			t.Fatalf("written back: %v, %d users of %d", err, len(again), len(users))
		}
		for name, hash := range users {
			if !bytes.Equal(again[name], hash) {
				t.Fatalf("user %q changed on the way back", name)
			}
		}
	})
}

// BenchmarkHtpasswdAuthenticate compares a login checked with bcrypt (the
// first request, or a wrong password) against one answered from the
// verified-password cache (every later request of a push).
func BenchmarkHtpasswdAuthenticate(b *testing.B) {
	path := filepath.Join(b.TempDir(), "htpasswd")
	if _, err := SetUser(path, "alice", "pw", bcrypt.DefaultCost); err != nil {
		b.Fatal(err)
	}
	h, err := OpenHtpasswd(path, slog.Default())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("bcrypt", func(b *testing.B) {
		for b.Loop() {
			if ok, _ := h.Authenticate(ctx, "alice", "wrong"); ok {
				b.Fatal("wrong password accepted")
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if ok, _ := h.Authenticate(ctx, "alice", "pw"); !ok {
				b.Fatal("right password refused")
			}
		}
	})
}
