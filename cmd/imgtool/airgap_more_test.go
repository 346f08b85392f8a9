package main_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

type hostileBundle struct{ name, path, want string }

// hostileBundles writes variants of the good bundle at path.
func hostileBundles(t *testing.T, path string, site *airgapSite) []hostileBundle {
	t.Helper()
	raw := mustv(os.ReadFile(path))(t)
	dir := t.TempDir()
	write := func(n string, data []byte) string {
		p := filepath.Join(dir, n+".tar")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	layer := mustv(mustv(site.tool.Layers())(t)[2].Digest())(t)
	return []hostileBundle{
		{"corrupt blob", write("corrupt", rewriteTar(t, raw, func(h *tar.Header, data []byte) []byte {
			if h.Name == "blobs/sha256/"+layer.Hex {
				data = bytes.Clone(data)
				data[len(data)/2] ^= 0xff
			}
			return data
		}, nil)), "does not match its digest"},
		{"path traversal", write("traversal", rewriteTar(t, raw, nil, &tar.Header{Name: "../../../tmp/evil", Typeflag: tar.TypeReg, Mode: 0o644})), "path traversal"},
		{"truncated", write("truncated", raw[:len(raw)*2/3]), "truncated"},
	}
}

// rewriteTar copies a tar, changing each member's content through edit
// and adding extra first.
func rewriteTar(t *testing.T, raw []byte, edit func(*tar.Header, []byte) []byte, extra *tar.Header) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	if extra != nil {
		must(t, tw.WriteHeader(extra))
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data := mustv(io.ReadAll(tr))(t)
		if edit != nil {
			data = edit(h, data)
		}
		h.Size = int64(len(data))
		must(t, tw.WriteHeader(h))
		mustv(tw.Write(data))(t)
	}
	must(t, tw.Close())
	return out.Bytes()
}

// TestRegistryImportSkopeoArchive imports what an independent tool wrote:
// skopeo's oci-archive, named by full reference and by bare tag.
func TestRegistryImportSkopeoArchive(t *testing.T) {
	a := startRegistry(t, t.TempDir(), "--access-log=false")
	pushRandom(t, a.addr+"/team/app:1")
	dir := t.TempDir()
	full, bare := filepath.Join(dir, "full.tar"), filepath.Join(dir, "bare.tar")
	skopeo(t, "copy", "--src-tls-verify=false", "docker://"+a.addr+"/team/app:1", "oci-archive:"+full+":"+a.addr+"/team/app:1")
	skopeo(t, "copy", "--src-tls-verify=false", "docker://"+a.addr+"/team/app:1", "oci-archive:"+bare+":v1")
	// skopeo converts the Docker manifest to OCI: the digest to keep is
	// the one of the manifest it wrote.
	_, small := tarMembers(t, full)
	var idx struct{ Manifests []v1.Descriptor }
	if err := json.Unmarshal(small["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("skopeo's index.json: %s (%v)", small["index.json"], err)
	}
	want := idx.Manifests[0].Digest.String()

	b := newCLI(t)
	if out := b.ok("registry", "import", full); importStatus(out, "imported") != 1 {
		t.Errorf("import of skopeo's archive:\n%s", out)
	}
	if line := b.fail(1, "registry", "import", bare); !strings.Contains(line, "--repository") {
		t.Errorf("bare-tag archive: %s", line)
	}
	if out := b.ok("registry", "import", "--repository", "team/app", bare); !strings.Contains(out, "0 blob(s) written") {
		t.Errorf("bare-tag archive into team/app:\n%s", out)
	}
	srv := startRegistry(t, b.root, "--access-log=false")
	for _, r := range []string{srv.addr + "/team/app:1", srv.addr + "/team/app:v1"} {
		if got := mustv(remote.Get(ref(t, r)))(t).Digest.String(); got != want {
			t.Errorf("%s: %s, want %s", r, got, want)
		}
	}
}
