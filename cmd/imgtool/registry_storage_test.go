package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRegistryServeStorageFlags: storage flags that cannot work are refused
// as usage errors before anything is created or listened on, and an
// endpoint's credentials are never echoed.
func TestRegistryServeStorageFlags(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--s3-bucket", "b"}, "--s3-* flags need --storage s3"},
		{[]string{"--storage", "nfs"}, `--storage "nfs": want "filesystem" or "s3"`},
		{[]string{"--storage", "s3"}, "needs --s3-bucket"},
		{[]string{"--storage", "s3", "--s3-bucket", "b", "--s3-root-directory", "a/../b"}, "--s3-root-directory"},
		{[]string{"--storage", "s3", "--s3-bucket", "b", "--s3-root-directory", "a b"}, "--s3-root-directory"},
		{[]string{"--storage", "s3", "--s3-bucket", "b", "--s3-chunk-size", "1048576"}, "at least 5242880 bytes"},
		{[]string{"--storage", "s3", "--s3-bucket", "b", "--s3-endpoint", "ftp://host"}, "scheme must be http or https"},
		{[]string{"--storage", "s3", "--s3-bucket", "b", "--s3-endpoint", "https://host", "--s3-insecure"}, "contradicts"},
		{[]string{"--storage", "s3", "--s3-bucket", "b", "--s3-endpoint", "http://key:hunter2@host"}, "must not carry credentials"},
	} {
		msg := c.fail(2, append([]string{"registry", "serve", "--addr", "127.0.0.1:0"}, tc.args...)...)
		if !strings.Contains(msg, tc.want) || strings.Contains(msg, "hunter2") {
			t.Errorf("serve %s: %s, want %q", strings.Join(tc.args, " "), msg, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(c.root, "registry")); !os.IsNotExist(err) {
		t.Errorf("refused serve commands made %s/registry: %v", c.root, err)
	}
}
