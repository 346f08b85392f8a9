package build_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/build"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestApplyChanges(t *testing.T) {
	base := ocispec.ImageConfig{
		Env:        []string{"PATH=/usr/bin:/bin", "P=9090"},
		Cmd:        []string{"old"},
		WorkingDir: "/srv",
		Labels:     map[string]string{"keep": "me"},
	}
	type set = map[string]struct{}
	for _, tc := range []struct {
		name    string
		changes []string
		want    func(*ocispec.ImageConfig) // applied to a copy of base
		err     string                     // part of the error; "" for success
	}{
		{name: "CMD exec form", changes: []string{`CMD ["/bin/sh", "-c", "echo \"hi\""]`},
			want: func(c *ocispec.ImageConfig) { c.Cmd = []string{"/bin/sh", "-c", `echo "hi"`} }},
		{name: "CMD shell form keeps $ and quotes for the shell", changes: []string{`CMD echo "$HOME" 'x'`},
			want: func(c *ocispec.ImageConfig) { c.Cmd = []string{"/bin/sh", "-c", `echo "$HOME" 'x'`} }},
		{name: "lower-case instruction", changes: []string{`cmd ["sh"]`},
			want: func(c *ocispec.ImageConfig) { c.Cmd = []string{"sh"} }},
		{name: "CMD [] clears", changes: []string{`CMD []`},
			want: func(c *ocispec.ImageConfig) { c.Cmd = []string{} }},
		// As in Docker, text that is not valid JSON is shell form: a shell
		// test starting with [ must keep working.
		{name: "bad JSON is shell form", changes: []string{`CMD ["sh"`},
			want: func(c *ocispec.ImageConfig) { c.Cmd = []string{"/bin/sh", "-c", `["sh"`} }},
		{name: "shell test is shell form", changes: []string{`CMD [ -f /x ] && run`},
			want: func(c *ocispec.ImageConfig) { c.Cmd = []string{"/bin/sh", "-c", `[ -f /x ] && run`} }},
		{name: "JSON of non-strings", changes: []string{`CMD ["sh", 1]`}, err: "strings only"},
		{name: "CMD without command", changes: []string{`CMD`}, err: "no command"},
		{name: "line continuation", changes: []string{"CMD [\"a\", \\\n \"b\"]"},
			want: func(c *ocispec.ImageConfig) { c.Cmd = []string{"a", "b"} }},
		{name: "ENTRYPOINT clears an inherited CMD", changes: []string{`ENTRYPOINT ["/init"]`},
			want: func(c *ocispec.ImageConfig) { c.Entrypoint, c.Cmd = []string{"/init"}, nil }},
		{name: "ENTRYPOINT keeps a CMD set before it", changes: []string{`CMD ["-v"]`, `ENTRYPOINT /init --x`},
			want: func(c *ocispec.ImageConfig) {
				c.Entrypoint, c.Cmd = []string{"/bin/sh", "-c", "/init --x"}, []string{"-v"}
			}},
		{name: "ENTRYPOINT [] clears", changes: []string{`ENTRYPOINT []`},
			want: func(c *ocispec.ImageConfig) { c.Entrypoint, c.Cmd = nil, nil }},
		{name: "ENV pairs, quoting, expansion against the old env", changes: []string{`ENV A=1 B="two words" PATH=$PATH:/opt/bin C=${A:-unset} D=\$HOME`},
			want: func(c *ocispec.ImageConfig) {
				c.Env = []string{"PATH=/usr/bin:/bin:/opt/bin", "P=9090", "A=1", "B=two words", "C=unset", "D=$HOME"}
			}},
		{name: "ENV legacy form", changes: []string{`ENV GREETING hello   world`},
			want: func(c *ocispec.ImageConfig) { c.Env = append(c.Env, "GREETING=hello   world") }},
		{name: "ENV sees earlier changes", changes: []string{`ENV A=1`, `ENV B=$A`},
			want: func(c *ocispec.ImageConfig) { c.Env = append(c.Env, "A=1", "B=1") }},
		{name: "ENV without value", changes: []string{`ENV A`}, err: "two arguments"},
		{name: "ENV blank name", changes: []string{`ENV =x`}, err: "blank"},
		{name: "LABEL quoted keys and values", changes: []string{`LABEL "org.example.title"="a \"b\"" single='$P stays' plain=x`},
			want: func(c *ocispec.ImageConfig) {
				c.Labels = map[string]string{"keep": "me", "org.example.title": `a "b"`, "single": "$P stays", "plain": "x"}
			}},
		{name: "LABEL bad substitution", changes: []string{`LABEL a=${P`}, err: "expand variables"},
		{name: "EXPOSE ports, protocols, ranges, variables", changes: []string{`EXPOSE 80 53/udp 7000-7002/TCP $P 9/sctp`},
			want: func(c *ocispec.ImageConfig) {
				c.ExposedPorts = set{"80/tcp": {}, "53/udp": {}, "7000/tcp": {}, "7001/tcp": {}, "7002/tcp": {}, "9090/tcp": {}, "9/sctp": {}}
			}},
		{name: "EXPOSE host mapping", changes: []string{`EXPOSE 127.0.0.1:80:80`}, err: "not a port number"},
		{name: "EXPOSE bad protocol", changes: []string{`EXPOSE 80/icmp`}, err: "unknown protocol"},
		{name: "EXPOSE zero", changes: []string{`EXPOSE 0`}, err: "not a port number"},
		{name: "EXPOSE backwards range", changes: []string{`EXPOSE 90-80`}, err: "range"},
		{name: "VOLUME JSON", changes: []string{`VOLUME ["/data", "/with space"]`},
			want: func(c *ocispec.ImageConfig) { c.Volumes = set{"/data": {}, "/with space": {}} }},
		{name: "VOLUME words", changes: []string{`VOLUME /a /b`},
			want: func(c *ocispec.ImageConfig) { c.Volumes = set{"/a": {}, "/b": {}} }},
		{name: "VOLUME empty", changes: []string{`VOLUME [""]`}, err: "empty"},
		{name: "WORKDIR relative to the current one", changes: []string{`WORKDIR app/../bin`},
			want: func(c *ocispec.ImageConfig) { c.WorkingDir = "/srv/bin" }},
		{name: "WORKDIR absolute, with variable", changes: []string{`ENV D=/data`, `WORKDIR $D/x/`},
			want: func(c *ocispec.ImageConfig) { c.Env = append(c.Env, "D=/data"); c.WorkingDir = "/data/x" }},
		{name: "USER", changes: []string{`USER 1000:1000`},
			want: func(c *ocispec.ImageConfig) { c.User = "1000:1000" }},
		{name: "USER without argument", changes: []string{`USER`}, err: "exactly one argument"},
		{name: "STOPSIGNAL name", changes: []string{`STOPSIGNAL SIGQUIT`},
			want: func(c *ocispec.ImageConfig) { c.StopSignal = "SIGQUIT" }},
		{name: "STOPSIGNAL number and realtime", changes: []string{`STOPSIGNAL 9`, `STOPSIGNAL rtmin+3`},
			want: func(c *ocispec.ImageConfig) { c.StopSignal = "rtmin+3" }},
		{name: "STOPSIGNAL typo", changes: []string{`STOPSIGNAL SIGTREM`}, err: "not a signal"},
		{name: "STOPSIGNAL zero", changes: []string{`STOPSIGNAL 0`}, err: "not a signal"},
		{name: "unknown instruction", changes: []string{`FROB x`}, err: "FROB cannot be applied"},
		{name: "build instruction", changes: []string{`RUN rm -rf /`}, err: "RUN cannot be applied"},
		{name: "FROM", changes: []string{`FROM scratch`}, err: "FROM cannot be applied"},
		{name: "Docker-only field", changes: []string{`HEALTHCHECK NONE`}, err: "HEALTHCHECK cannot be applied"},
		{name: "empty", changes: []string{``}, err: "no instruction"},
		{name: "blank and comment", changes: []string{" \n# CMD x"}, err: "no instruction"},
		{name: "two instructions in one change", changes: []string{"CMD a\nENV b=c"}, err: "2 instructions"},
		{name: "unknown flag", changes: []string{`CMD --chown=1 x`}, err: "unknown flag"},
		{name: "a bad change undoes the good ones", changes: []string{`USER x`, `FROB`}, err: "FROB"},
		{name: "no changes", changes: nil, want: func(*ocispec.ImageConfig) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := cloneConfig(base)
			got, err := build.ApplyChanges(in, tc.changes)
			if !reflect.DeepEqual(in, base) {
				t.Errorf("ApplyChanges modified its input: %+v", in)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ApplyChanges(%q) = %+v, %v; want an error about %q", tc.changes, got, err, tc.err)
				}
				if !reflect.DeepEqual(got, ocispec.ImageConfig{}) {
					t.Errorf("failed ApplyChanges returned a config: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ApplyChanges(%q): %v", tc.changes, err)
			}
			want := cloneConfig(base)
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ApplyChanges(%q):\n got %s\nwant %s", tc.changes, configJSON(t, got), configJSON(t, want))
			}
		})
	}
}

func cloneConfig(c ocispec.ImageConfig) ocispec.ImageConfig {
	out := c
	out.Env = append([]string(nil), c.Env...)
	out.Cmd = append([]string(nil), c.Cmd...)
	out.Labels = map[string]string{}
	for k, v := range c.Labels {
		out.Labels[k] = v
	}
	return out
}

// FuzzApplyChanges: whatever a user passes to --change, parsing never
// panics, and a change either fails or gives a config.
func FuzzApplyChanges(f *testing.F) {
	for _, s := range []string{`CMD ["sh"]`, `ENV A=$B "c d"`, `LABEL a='b' "c"=d`, `EXPOSE 1-3/udp $P`, `WORKDIR ../x`, "CMD a \\\n b", `STOPSIGNAL RTMAX-2`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, change string) {
		cfg, err := build.ApplyChanges(ocispec.ImageConfig{Env: []string{"P=80"}}, []string{change})
		if err == nil && cfg.WorkingDir != "" && !strings.HasPrefix(cfg.WorkingDir, "/") {
			t.Fatalf("%q gave a relative WorkingDir %q", change, cfg.WorkingDir)
		}
	})
}

func configJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
