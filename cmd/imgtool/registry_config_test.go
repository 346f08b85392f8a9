//go:build !imgtool_lean

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRegistryConfigFile applies --config files to the real `registry
// serve` command and checks the flags it ends up with.
func TestRegistryConfigFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		args []string          // given on the command line
		want map[string]string // flag -> value after the file
		err  string
	}{
		{name: "flat keys", file: "addr: 127.0.0.1:6000\nread-only: true\ngrace: 5s\nlogin-failures: 3\n",
			want: map[string]string{"addr": "127.0.0.1:6000", "read-only": "true", "grace": "5s", "login-failures": "3"}},
		{name: "nested keys join with dashes", file: "tls:\n  cert: /c.pem\n  key: /k.pem\nlogin:\n  window: 2m\n",
			want: map[string]string{"tls-cert": "/c.pem", "tls-key": "/k.pem", "login-window": "2m0s"}},
		{name: "a list for a repeatable flag", file: "tls-self-signed: true\ntls-host: [registry.lan, 10.0.0.5]\n",
			want: map[string]string{"tls-host": "[registry.lan,10.0.0.5]"}},
		{name: "global flags too", file: "root: /srv/imgtool\nlog-level: info\n",
			want: map[string]string{"root": "/srv/imgtool", "log-level": "info"}},
		{name: "flags given explicitly win", file: "addr: 127.0.0.1:6000\nread-only: true\n", args: []string{"--addr", "127.0.0.1:7000"},
			want: map[string]string{"addr": "127.0.0.1:7000", "read-only": "true"}},
		{name: "empty file", file: "", want: map[string]string{"addr": "127.0.0.1:5000"}},
		{name: "comments only", file: "# nothing yet\n", want: map[string]string{"read-only": "false"}},
		{name: "unknown key", file: "addr: :5000\nreadonly: true\n", err: `line 2: unknown setting "readonly"`},
		{name: "unknown nested key", file: "tls:\n  certificate: /c.pem\n", err: `line 2: unknown setting "tls-certificate"`},
		{name: "config may not name itself", file: "config: other.yaml\n", err: `unknown setting "config"`},
		{name: "bad duration", file: "grace: 5 minutes\n", err: `line 1: grace: "5 minutes"`},
		{name: "duration without unit", file: "login-window: 60\n", err: `login-window: "60"`},
		{name: "bad bool", file: "read-only: maybe\n", err: `read-only: "maybe"`},
		{name: "bad int", file: "login-failures: lots\n", err: `login-failures: "lots"`},
		{name: "no value", file: "htpasswd:\n", err: "line 1: htpasswd has no value"},
		{name: "list for a single flag", file: "addr: [a, b]\n", err: "addr takes one value, not a list"},
		{name: "set twice", file: "tls-cert: /a\ntls:\n  cert: /b\n", err: "line 3: tls-cert is already set on line 1"},
		{name: "not a mapping", file: "- addr\n", err: "want a mapping of settings"},
		{name: "not YAML", file: "addr: [\n", err: "registry config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "registry.yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			root := newRootCmd()
			serve, _, err := root.Find([]string{"registry", "serve"})
			if err != nil {
				t.Fatal(err)
			}
			if err := serve.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			err = applyConfigFile(serve, path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				if _, usage := err.(usageError); !usage {
					t.Errorf("error %v is not a usage error (exit 2)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				fl := configurableFlag(serve, name)
				if fl == nil || fl.Value.String() != want {
					t.Errorf("--%s = %v, want %q", name, fl.Value, want)
				}
			}
		})
	}
}

// FuzzParseConfig: no YAML makes the parser panic, and what it accepts has
// plain, distinct keys.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("addr: :5000\ntls:\n  cert: a\n  key: b\ntls-host: [x, y]\n"))
	f.Add([]byte("a: &x 1\nb: *x\n"))
	f.Add([]byte("? [a]\n: b\n"))
	f.Add([]byte("a:\n  b:\n    c: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		settings, err := parseConfig(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, s := range settings {
			if s.key == "" || seen[s.key] {
				t.Fatalf("key %q empty or repeated", s.key)
			}
			seen[s.key] = true
		}
	})
}
