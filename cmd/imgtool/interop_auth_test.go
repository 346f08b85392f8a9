package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInteropTLSTokenAuth serves as an operator would outside a lab:
// HTTPS with the self-signed CA that `registry serve --tls-self-signed`
// makes, htpasswd logins and the bearer-token flow. Each client trusts
// that CA (no insecure flag anywhere), logs in, pushes, mounts a blob
// from another repository (a token with scopes on two repositories, or
// one repository asked twice, as containerd does) and pulls.
func TestInteropTLSTokenAuth(t *testing.T) {
	const user, password = "alice", "correct horse"
	c := newCLI(t)
	addUser(t, c, user, password)
	srv := startRegistry(t, c.root, "--tls-self-signed", "--token-auth",
		"--htpasswd", filepath.Join(c.root, "registry-htpasswd"))
	srv.waitLog(t, "fingerprint")
	reg := srv.addr
	certDir := filepath.Join(c.root, "registry-tls")
	ca := filepath.Join(certDir, "ca.crt")

	// crane (ggcr reads SSL_CERT_FILE) pushes the image the others use.
	crane := client{t: t, srv: srv, exe: goTool(t, cranePkg, ""),
		env: []string{"DOCKER_CONFIG=" + t.TempDir(), "SSL_CERT_FILE=" + ca}}
	crane.run("auth", "login", reg, "-u", user, "-p", password)
	layer := filepath.Join(t.TempDir(), "layer.tar")
	writeTar(t, layer, map[string]string{"hello.txt": "hello over TLS\n"})
	crane.run("append", "--oci-empty-base", "-f", layer, "-t", reg+"/team/app:1")
	want := strings.TrimSpace(crane.run("digest", reg+"/team/app:1"))
	crane.run("copy", reg+"/team/app:1", reg+"/crane/app:1")

	t.Run("oras", func(t *testing.T) {
		home := t.TempDir()
		oras := client{t: t, srv: srv, exe: goTool(t, orasPkg, orasVer), dir: home,
			env: []string{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker")}}
		oras.run("login", "--ca-file", ca, "-u", user, "-p", password, reg)
		if err := os.WriteFile(filepath.Join(home, "sbom.json"), []byte(`{}`), 0o644); err != nil {
			t.Fatal(err)
		}
		oras.run("attach", "--ca-file", ca, "--artifact-type", "application/vnd.example.sbom",
			reg+"/team/app:1", "sbom.json:application/spdx+json")
		oras.run("copy", "-r", "--from-ca-file", ca, "--to-ca-file", ca, reg+"/team/app:1", reg+"/oras/app:1")
		if out := oras.run("discover", "--ca-file", ca, reg+"/oras/app:1"); !strings.Contains(out, "application/vnd.example.sbom") {
			t.Errorf("oras discover of the copy:\n%s", out)
		}
	})
	t.Run("podman", func(t *testing.T) {
		podman := podmanClient(t, srv)
		podman("login", "--cert-dir", certDir, "-u", user, "-p", password, reg)
		podman("pull", "--cert-dir", certDir, reg+"/team/app:1")
		// podman writes a manifest of its own: check the one it reports.
		digestFile := filepath.Join(t.TempDir(), "digest")
		podman("push", "--cert-dir", certDir, "--digestfile", digestFile, reg+"/team/app:1", reg+"/podman/app:1")
		pushed, err := os.ReadFile(digestFile)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(crane.run("digest", reg+"/podman/app:1")); got != string(pushed) {
			t.Errorf("podman pushed %s, the registry serves %s", pushed, got)
		}
		podman("pull", "--cert-dir", certDir, reg+"/crane/app@"+want)
	})
	t.Run("containerd", func(t *testing.T) {
		// containerd speaks plain HTTP to 127.0.0.1 unless a hosts.toml
		// says otherwise: the one an operator puts under
		// /etc/containerd/certs.d/HOST:PORT/.
		hosts := filepath.Join(t.TempDir(), "certs.d")
		toml := "server = \"https://" + reg + "\"\n[host.\"https://" + reg + "\"]\n  ca = \"" + ca + "\"\n"
		if err := os.MkdirAll(filepath.Join(hosts, reg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hosts, reg, "hosts.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		ctr := ctrClient(t, srv)
		creds := []string{"--hosts-dir", hosts, "--user", user + ":" + password}
		ctr(append([]string{"images", "pull", "--snapshotter", "native"}, append(creds, reg+"/team/app:1")...)...)
		ctr("images", "tag", reg+"/team/app:1", reg+"/ctr/app:1")
		ctr(append([]string{"images", "push"}, append(creds, reg+"/ctr/app:1")...)...)
		// containerd logs in with the OAuth2 POST form of /token; each of
		// those must succeed rather than send it back to GET.
		posts := 0
		for _, line := range strings.Split(srv.stderr(), "\n") {
			if strings.Contains(line, "method=POST path=/token ") {
				posts++
				if !strings.Contains(line, "status=200") {
					t.Errorf("containerd's token request: %s", line)
				}
			}
		}
		if posts == 0 {
			t.Errorf("containerd never used POST /token")
		}
	})
	// Every push landed, by the digest crane pushed (HEAD, with a login).
	for _, repo := range []string{"crane/app", "oras/app", "ctr/app"} {
		if got := strings.TrimSpace(crane.run("digest", reg+"/"+repo+":1")); got != want {
			t.Errorf("%s:1 is %s, want %s", repo, got, want)
		}
	}
}
