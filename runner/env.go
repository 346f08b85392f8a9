package runner

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// MergeEnv returns base with each of the override lists applied in order,
// as docker does for an image's Env, --env-file and -e: a later KEY
// replaces an earlier one in place, new keys are appended.
func MergeEnv(base []string, overrides ...[]string) []string {
	out := append([]string(nil), base...)
	index := make(map[string]int, len(out))
	for i, kv := range out {
		index[envKey(kv)] = i
	}
	for _, list := range overrides {
		for _, kv := range list {
			k := envKey(kv)
			if i, ok := index[k]; ok {
				out[i] = kv
				continue
			}
			index[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

func envKey(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return k
}

// ParseEnv turns -e values into KEY=VALUE: a bare KEY takes its value
// from lookup (the caller's environment) and is dropped when unset, as
// docker does.
func ParseEnv(values []string, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	for _, v := range values {
		k, _, hasValue := strings.Cut(v, "=")
		if k == "" || strings.ContainsAny(k, " \t\x00") {
			return nil, fmt.Errorf("environment variable %q: bad name", v)
		}
		if hasValue {
			out = append(out, v)
			continue
		}
		if val, ok := lookup(k); ok {
			out = append(out, k+"="+val)
		}
	}
	return out, nil
}

// ParseEnvFile reads docker's --env-file format: one KEY=VALUE or KEY per
// line, blank lines and lines starting with # ignored, no quoting.
func ParseEnvFile(r io.Reader, lookup func(string) (string, bool)) ([]string, error) {
	var values []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, _, _ := strings.Cut(line, "="); k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("line %d: %q is not KEY=VALUE", n, line)
		}
		values = append(values, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return ParseEnv(values, lookup)
}
