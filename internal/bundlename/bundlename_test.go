package bundlename

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestRepository(t *testing.T) {
	for _, tc := range []struct {
		ref           string
		plain, scoped string
	}{
		{"busybox", "library/busybox", "docker.io/library/busybox"},
		{"docker.io/library/busybox:1", "library/busybox", "docker.io/library/busybox"},
		{"quay.io/org/app:1", "org/app", "quay.io/org/app"},
		{"localhost/app", "app", "localhost/app"},
		{"127.0.0.1:5000/team/app@sha256:0123456789012345678901234567890123456789012345678901234567890123", "team/app", "127.0.0.1_5000/team/app"},
	} {
		r, err := name.ParseReference(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := Repository(r, false); got != tc.plain {
			t.Errorf("%s: %s, want %s", tc.ref, got, tc.plain)
		}
		if got := Repository(r, true); got != tc.scoped {
			t.Errorf("%s scoped: %s, want %s", tc.ref, got, tc.scoped)
		}
	}
}
