//go:build !imgtool_lean

package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// maxConfigSize bounds a --config file; a real one is a few hundred bytes.
const maxConfigSize = 1 << 20

// configSetting is one key of a --config file with its value(s) and the
// line it came from, for error messages.
type configSetting struct {
	key    string
	values []string
	line   int
}

// parseConfig reads a YAML mapping whose keys are flag names. Nested
// mappings join their keys with "-", so
//
//	tls:
//	  cert: /etc/imgtool/cert.pem
//
// is the same as "tls-cert: /etc/imgtool/cert.pem". A sequence gives a
// repeatable flag several values.
func parseConfig(data []byte) ([]configSetting, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of settings (key: value)", root.Line)
	}
	var out []configSetting
	if err := flattenConfig(root, "", &out); err != nil {
		return nil, err
	}
	seen := map[string]int{}
	for _, s := range out {
		if prev, dup := seen[s.key]; dup {
			return nil, fmt.Errorf("line %d: %s is already set on line %d", s.line, s.key, prev)
		}
		seen[s.key] = s.line
	}
	return out, nil
}

func flattenConfig(m *yaml.Node, prefix string, out *[]configSetting) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return fmt.Errorf("line %d: a key must be a plain name", k.Line)
		}
		key := prefix + k.Value
		switch v.Kind {
		case yaml.MappingNode:
			if err := flattenConfig(v, key+"-", out); err != nil {
				return err
			}
		case yaml.SequenceNode:
			s := configSetting{key: key, line: k.Line}
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return fmt.Errorf("line %d: %s: list items must be plain values", item.Line, key)
				}
				s.values = append(s.values, item.Value)
			}
			*out = append(*out, s)
		case yaml.ScalarNode:
			if v.Tag == "!!null" {
				return fmt.Errorf("line %d: %s has no value", k.Line, key)
			}
			*out = append(*out, configSetting{key: key, values: []string{v.Value}, line: k.Line})
		default:
			return fmt.Errorf("line %d: %s: unsupported value (aliases and anchors are not)", k.Line, key)
		}
	}
	return nil
}

// applyConfigFile sets cmd's flags from the --config file at path; a flag
// given on the command line wins over the file. Any key that names no
// flag is an error, so a typo cannot silently leave a setting at its
// default (which for "read-only" or "htpasswd" would be a security hole).
func applyConfigFile(cmd *cobra.Command, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read registry config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return fmt.Errorf("read registry config %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return fmt.Errorf("registry config %s: larger than %d bytes", path, maxConfigSize)
	}
	settings, err := parseConfig(data)
	if err != nil {
		return usageError{fmt.Errorf("registry config %s: %w", path, err)}
	}
	for _, s := range settings {
		fl := configurableFlag(cmd, s.key)
		if fl == nil {
			return usageError{fmt.Errorf("registry config %s: line %d: unknown setting %q (the keys are the long flags of `%s`)", path, s.line, s.key, cmd.CommandPath())}
		}
		if fl.Changed {
			continue
		}
		if len(s.values) > 1 && !strings.HasSuffix(fl.Value.Type(), "Slice") && !strings.HasSuffix(fl.Value.Type(), "Array") {
			return usageError{fmt.Errorf("registry config %s: line %d: %s takes one value, not a list", path, s.line, s.key)}
		}
		for _, v := range s.values {
			if err := fl.Value.Set(v); err != nil {
				return usageError{fmt.Errorf("registry config %s: line %d: %s: %q: %w", path, s.line, s.key, v, err)}
			}
		}
		fl.Changed = true
	}
	return nil
}

// configurableFlag finds the flag a config key names: cmd's own flags or
// the global ones, but not --config itself or --help.
func configurableFlag(cmd *cobra.Command, key string) *pflag.Flag {
	if slices.Contains([]string{"config", "help"}, key) {
		return nil
	}
	if fl := cmd.Flags().Lookup(key); fl != nil {
		return fl
	}
	return cmd.InheritedFlags().Lookup(key)
}
