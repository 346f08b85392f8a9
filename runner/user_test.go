package runner_test

import (
	"os"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/runner"
)

// TestUser resolves -u in the image's passwd and group files. As root the
// whole id range is mapped; an unprivileged caller without subordinate
// ids has only root inside and gets an error that says what to set up.
func TestUser(t *testing.T) {
	dir := newRootfs(t)
	cases := []struct{ user, want string }{
		{"", "0 0 0"},
		{"app", "1000 1000 1000 2000"},
		{"app:root", "1000 0 0"},
		{"1000", "1000 1000 1000 2000"},
		{"4242:4343", "4242 4343 4343"},
		{"root", "0 0 0"},
	}
	for _, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			r := run(t, runner.Spec{Dir: dir, User: c.user, Args: sh(`echo $(id -u) $(id -g) $(id -G)`)})
			wantOK := os.Geteuid() == 0 || strings.HasPrefix(c.want, "0 0")
			if !wantOK {
				if r.err == nil || !strings.Contains(r.err.Error(), "/etc/subuid") {
					t.Fatalf("got %q, %v: want an error naming /etc/subuid", r.stdout, r.err)
				}
				t.Logf("OUTCOME -u %s as uid %d: %v", c.user, os.Geteuid(), r.err)
				return
			}
			if r.err != nil || strings.TrimSpace(r.stdout) != c.want {
				t.Fatalf("got %q, %v, %q; want %q", r.stdout, r.err, r.stderr, c.want)
			}
		})
	}
}

func TestParseVolume(t *testing.T) {
	host := t.TempDir()
	cases := []struct {
		in   string
		want runner.Mount
		err  string
	}{
		{host + ":/conf", runner.Mount{Source: host, Target: "/conf"}, ""},
		{host + ":/conf:ro", runner.Mount{Source: host, Target: "/conf", ReadOnly: true}, ""},
		{host + "/:/conf/:rw", runner.Mount{Source: host, Target: "/conf"}, ""},
		{"relative:/conf", runner.Mount{}, "must be absolute"},
		{host + ":relative", runner.Mount{}, "want an absolute path"},
		{host + ":/", runner.Mount{}, "other than /"},
		{host, runner.Mount{}, "want HOST:CONTAINER"},
		{host + ":/a:ro:x", runner.Mount{}, "want HOST:CONTAINER"},
		{host + ":/a:rx", runner.Mount{}, "unknown option"},
		{"/no/such/path:/a", runner.Mount{}, "no such file"},
	}
	for _, c := range cases {
		got, err := runner.ParseVolume(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: got %v, %v; want error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	if _, err := runner.ParseTmpfs("/run:size=1m"); err == nil {
		t.Error("tmpfs options were silently accepted")
	}
	if m, err := runner.ParseTmpfs("/run/"); err != nil || m.Target != "/run" || !m.Tmpfs {
		t.Errorf("ParseTmpfs: %+v %v", m, err)
	}
}
