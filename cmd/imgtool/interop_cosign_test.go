package main_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestInteropCosign signs images in `imgtool registry serve` with cosign
// (built from the Go module proxy at cosignVer; `make interop` runs it,
// `make test` does not: a cold build takes about 10 minutes of CPU) and a
// key pair made for the test, with no transparency log, in its three ways
// of storing a signature: a sha256-<hex>.sig tag, an OCI 1.1 referrer,
// and a sigstore bundle referrer. Each verifies with the public key and
// fails with another key.
func TestInteropCosign(t *testing.T) {
	srv := startRegistry(t, t.TempDir())
	reg := srv.addr
	home := t.TempDir()
	// An empty trusted root: verification needs nothing but the key, and
	// cosign would otherwise fetch sigstore's root over the internet.
	trusted := filepath.Join(home, "trusted_root.json")
	if err := os.WriteFile(trusted, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cosign := client{t: t, srv: srv, exe: goTool(t, cosignPkg, cosignVer), dir: home,
		env: []string{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"), "COSIGN_PASSWORD="}}
	cosign.run("generate-key-pair")
	other := cosign
	other.dir = t.TempDir()
	other.run("generate-key-pair")
	otherKey := filepath.Join(other.dir, "cosign.pub")

	modes := []struct {
		name         string
		sign, verify []string
		artifactType string // of the referrer; "" for the .sig tag
	}{
		{"tag", nil, nil, ""},
		{"referrer", []string{"--registry-referrers-mode=oci-1-1"}, []string{"--experimental-oci11"}, "application/vnd.dev.cosign.artifact.sig.v1+json"},
		{"bundle", []string{"--new-bundle-format"}, []string{"--new-bundle-format"}, "application/vnd.dev.sigstore.bundle.v0.3+json"},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			cosign.t, other.t = t, t
			repo := "cosign/" + m.name
			signed := reg + "/" + repo + "@" + digestOf(t, pushRandom(t, reg+"/"+repo+":1"))
			unsigned := reg + "/" + repo + "@" + digestOf(t, pushRandom(t, reg+"/"+repo+":2"))
			signer := cosign
			signer.env = slices.Concat(cosign.env, []string{"COSIGN_EXPERIMENTAL=1"}) // for --registry-referrers-mode
			signer.run(slices.Concat([]string{"sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--yes"}, m.sign, []string{signed})...)
			verify := slices.Concat([]string{"verify", "--insecure-ignore-tlog", "--allow-http-registry", "--trusted-root", trusted}, m.verify)
			signer.run(slices.Concat(verify, []string{"--key", "cosign.pub", signed})...)
			// Refused for want of a good signature, not for a usage error.
			// (With a wrong key cosign falls back to looking for a .sig
			// tag, and may say it found none.)
			for _, out := range []string{
				other.fail(slices.Concat(verify, []string{"--key", otherKey, signed})...),
				signer.fail(slices.Concat(verify, []string{"--key", "cosign.pub", unsigned})...),
			} {
				if !slices.ContainsFunc([]string{"no matching", "no signatures found", "no valid bundles"}, func(s string) bool { return strings.Contains(out, s) }) {
					t.Errorf("cosign verify failed for another reason:\n%s", out)
				}
			}

			sigTag := "sha256-" + strings.TrimPrefix(signed, reg+"/"+repo+"@sha256:") + ".sig"
			tags := getJSON(t, reg, "/v2/"+repo+"/tags/list")["tags"]
			if m.artifactType == "" {
				if !slices.Contains(tags, sigTag) {
					t.Errorf("tags %v lack the signature tag %s", tags, sigTag)
				}
				return
			}
			if !slices.Equal(tags, []string{"1", "2"}) {
				t.Errorf("tags %v: cosign fell back to tags", tags)
			}
			if got := referrerTypes(t, reg, repo, strings.TrimPrefix(signed, reg+"/"+repo+"@")); !slices.Equal(got, []string{m.artifactType}) {
				t.Errorf("referrers of the signed image have types %v, want %s", got, m.artifactType)
			}
		})
	}
}

// referrerTypes lists the artifact types of d's referrers.
func referrerTypes(t *testing.T, addr, repo, d string) []string {
	t.Helper()
	resp, body := get(t, http.MethodGet, "http://"+addr+"/v2/"+repo+"/referrers/"+d, "")
	var idx struct {
		Manifests []struct{ ArtifactType string }
	}
	if err := json.Unmarshal([]byte(body), &idx); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET referrers of %s: %s %v\n%s", d, resp.Status, err, body)
	}
	var types []string
	for _, m := range idx.Manifests {
		types = append(types, m.ArtifactType)
	}
	return types
}
