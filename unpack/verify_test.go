package unpack_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/unpack"
	"github.com/opencontainers/go-digest"
)

// claims is a reader that says it verifies a digest but does not.
type claims struct {
	*bytes.Reader
	d digest.Digest
}

func (c claims) VerifiesDigest() digest.Digest { return c.d }

// TestBlobVerifiedOnce: a blob read from the store is checked by the
// store's reader instead of being hashed again, and a corrupt one is still
// refused. The corruption flips the gzip header's OS byte: the tar (and so
// the diffID) stays the same, only the blob's digest catches it.
func TestBlobVerifiedOnce(t *testing.T) {
	ctx := context.Background()
	l := mkLayer(t, "gzip", newTar(t).dir("etc/").file("etc/hosts", "127.0.0.1 localhost\n").bytes())
	bad := append([]byte(nil), l.Blob...)
	bad[9] ^= 0xff
	midway := append([]byte(nil), l.Blob...)
	midway[len(midway)/2] ^= 0xff
	for _, c := range []struct {
		name    string
		blob    []byte
		inStore bool
		claim   digest.Digest // a reader claiming to verify this
		want    string        // "" for success, else a word of the error
	}{
		{name: "store, intact", blob: l.Blob, inStore: true},
		{name: "store, header byte flipped", blob: bad, inStore: true, want: "store is corrupt"},
		{name: "store, data byte flipped", blob: midway, inStore: true, want: "store is corrupt"},
		{name: "reader, header byte flipped", blob: bad, want: "does not hash"},
		{name: "reader claiming another digest", blob: bad, claim: digest.FromString("other"), want: "does not hash"},
		{name: "reader claiming no digest", blob: bad, claim: "", want: "does not hash"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			defer e.checkCanary(t)
			var r io.Reader = claims{bytes.NewReader(c.blob), c.claim}
			if c.inStore {
				r = openReplaced(t, l, c.blob)
			}
			_, err := unpack.Apply(ctx, e.root, r, l.Desc, l.DiffID, unpack.Options{})
			if c.want == "" {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				e.wantFile(t, "etc/hosts", "127.0.0.1 localhost\n")
				return
			}
			if !errors.Is(err, store.ErrMismatch) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Apply: %v, want a mismatch saying %q", err, c.want)
			}
		})
	}
}

// openReplaced puts l's blob in a new store, replaces its file by blob
// and opens it.
func openReplaced(t *testing.T, l testLayer, blob []byte) io.Reader {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, t.TempDir())
	must(t, err)
	t.Cleanup(func() { s.Close() })
	must(t, store.Put(ctx, s, l.Desc, bytes.NewReader(l.Blob)))
	p := filepath.Join(s.Dir(), "blobs", "sha256", l.Desc.Digest.Encoded())
	must(t, os.Chmod(p, 0o644))
	must(t, os.WriteFile(p, blob, 0o644))
	rc, err := s.Open(ctx, l.Desc.Digest)
	must(t, err)
	t.Cleanup(func() { rc.Close() })
	if _, ok := rc.(store.Verifying); !ok {
		t.Fatalf("the store's blob reader %T is no store.Verifying: unpack hashes its blobs twice", rc)
	}
	return rc
}
