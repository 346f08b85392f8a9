package manifest

import (
	"reflect"
	"testing"
)

func TestCommand(t *testing.T) {
	s := func(v ...string) []string { return v }
	p := func(v ...string) *[]string { return &v }
	cases := []struct {
		name       string
		ep, cmd    []string
		epOverride *[]string
		args, want []string
	}{
		{"cmd only", nil, s("sh"), nil, nil, s("sh")},
		{"entrypoint and cmd", s("/app"), s("--help"), nil, nil, s("/app", "--help")},
		{"args replace cmd", s("/app"), s("--help"), nil, s("--version"), s("/app", "--version")},
		{"args without entrypoint", nil, s("sh"), nil, s("echo", "hi"), s("echo", "hi")},
		{"entrypoint override drops cmd", s("/app"), s("--help"), p("/bin/sh"), nil, s("/bin/sh")},
		{"entrypoint override with args", s("/app"), s("--help"), p("/bin/sh"), s("-c", "true"), s("/bin/sh", "-c", "true")},
		{"empty entrypoint override", s("/app"), s("--help"), p(), s("ls"), s("ls")},
		{"nothing", nil, nil, nil, nil, s()},
	}
	for _, c := range cases {
		got := Command(c.ep, c.cmd, c.epOverride, c.args)
		if len(got) == 0 && len(c.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
