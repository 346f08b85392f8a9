package runner_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/runner"
)

func TestMergeEnv(t *testing.T) {
	got := runner.MergeEnv([]string{"PATH=/bin", "A=1", "B=2"}, []string{"B=file", "C=3"}, []string{"A=cli", "B=cli", "D="})
	want := []string{"PATH=/bin", "A=cli", "B=cli", "C=3", "D="}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseEnv(t *testing.T) {
	host := map[string]string{"HOSTVAR": "from host", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := host[k]; return v, ok }
	got, err := runner.ParseEnv([]string{"K=V", "HOSTVAR", "UNSET", "EMPTY", "X=a=b"}, lookup)
	want := []string{"K=V", "HOSTVAR=from host", "EMPTY=", "X=a=b"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"=x", "A B=1", ""} {
		if _, err := runner.ParseEnv([]string{bad}, lookup); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	file := "# comment\n\nA=1\n  B=two words\nHOSTVAR\nUNSET\n"
	got, err = runner.ParseEnvFile(strings.NewReader(file), lookup)
	want = []string{"A=1", "B=two words", "HOSTVAR=from host"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("env file: got %q, %v; want %q", got, err, want)
	}
	if _, err := runner.ParseEnvFile(strings.NewReader("A=1\nnot a var\n"), lookup); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad env file: %v", err)
	}
}
