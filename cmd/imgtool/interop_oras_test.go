package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// orasOut is the part of oras's --format json output the test reads.
type orasOut struct {
	Reference    string
	Digest       string
	ArtifactType string
	Referrers    []orasOut
}

// TestInteropOras drives `imgtool registry serve` with the oras CLI
// (built from the Go module proxy at orasVer): an artifact with an
// artifactType, referrers attached with `oras attach` (the registry must
// answer OCI-Subject, or oras would fall back to sha256-<hex> tags) and
// found with `oras discover`, filtered by type and nested; copied with
// its referrers, pulled back byte for byte, and a referrer deleted.
func TestInteropOras(t *testing.T) {
	srv := startRegistry(t, t.TempDir())
	reg := srv.addr
	home, src := t.TempDir(), t.TempDir()
	// oras takes relative paths only, from its working directory.
	oras := client{t: t, srv: srv, exe: goTool(t, orasPkg, orasVer), dir: src,
		env: []string{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker")}}
	run := func(args ...string) orasOut {
		t.Helper()
		var out orasOut
		raw := oras.run(append(args, "--plain-http", "--format", "json")...)
		if err := json.Unmarshal([]byte(raw), &out); err != nil {
			t.Fatalf("oras %s: %v\n%s", strings.Join(args, " "), err, raw)
		}
		return out
	}
	plain := func(args ...string) string {
		t.Helper()
		return oras.run(append(args, "--plain-http")...)
	}
	files := map[string]string{
		"hello.txt": "hello from oras\n",
		"sbom.json": `{"spdxVersion":"SPDX-2.3"}`,
		"sig.txt":   "not really a signature\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := func(name, mediaType string) string { return name + ":" + mediaType }
	art := reg + "/oras/art"

	pushed := run("push", "--artifact-type", "application/vnd.example.thing", art+":1", in("hello.txt", "text/plain"))
	if got := manifestDigest(t, reg, "oras/art", "1"); got != pushed.Digest {
		t.Fatalf("oras push reported %s, registry serves %s", pushed.Digest, got)
	}
	var m struct{ ArtifactType string }
	if err := json.Unmarshal([]byte(plain("manifest", "fetch", art+":1")), &m); err != nil || m.ArtifactType != "application/vnd.example.thing" {
		t.Errorf("oras manifest fetch: artifactType %q (%v)", m.ArtifactType, err)
	}

	sbom := run("attach", "--artifact-type", "application/vnd.example.sbom", art+":1", in("sbom.json", "application/spdx+json"))
	sig := run("attach", "--artifact-type", "application/vnd.example.sig", art+"@"+sbom.Digest, in("sig.txt", "text/plain"))
	tree := run("discover", art+":1")
	if len(tree.Referrers) != 1 || tree.Referrers[0].Digest != sbom.Digest ||
		len(tree.Referrers[0].Referrers) != 1 || tree.Referrers[0].Referrers[0].Digest != sig.Digest {
		t.Fatalf("oras discover: %+v, want sbom %s signed by %s", tree, sbom.Digest, sig.Digest)
	}
	if got := run("discover", "--artifact-type", "application/vnd.example.sig", art+":1"); len(got.Referrers) != 0 {
		t.Errorf("discover filtered by a type no direct referrer has: %+v", got.Referrers)
	}
	if tags := strings.Fields(plain("repo", "tags", art)); !slices.Equal(tags, []string{"1"}) {
		t.Errorf("tags %v: oras fell back to the referrers tag schema", tags)
	}

	// Copied with its referrers, then pulled back from the copy.
	oras.run("copy", "-r", "--from-plain-http", "--to-plain-http", art+":1", reg+"/oras/copy:1")
	if got := run("discover", reg+"/oras/copy:1"); len(got.Referrers) != 1 || got.Referrers[0].Digest != sbom.Digest {
		t.Errorf("oras copy -r: the copy's referrers are %+v", got.Referrers)
	}
	out := t.TempDir()
	plain("pull", "-o", out, reg+"/oras/copy:1")
	plain("pull", "-o", out, reg+"/oras/copy@"+sbom.Digest)
	for _, name := range []string{"hello.txt", "sbom.json"} {
		if got, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(got) != files[name] {
			t.Errorf("oras pull %s: %q (%v)", name, got, err)
		}
	}

	// Deleting the signature removes it from the sbom's referrers.
	plain("manifest", "delete", "--force", art+"@"+sig.Digest)
	if got := run("discover", art+"@"+sbom.Digest); len(got.Referrers) != 0 {
		t.Errorf("referrers after deleting the signature: %+v", got.Referrers)
	}
}
