package registry

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestEnsureSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "registry-tls")
	now := time.Now()
	hosts := []string{"localhost", "registry.example", "127.0.0.1", "::1"}
	s, err := EnsureSelfSigned(dir, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	if !s.CreatedCA || !s.RenewedServer || len(s.Fingerprint) != 32*3-1 {
		t.Fatalf("first start: %+v", s)
	}
	for name, mode := range map[string]os.FileMode{caCertName: 0o644, caKeyName: 0o600, serverCertName: 0o644, serverKeyName: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, want mode %v", name, err, mode)
		}
	}
	leafPEM, _ := os.ReadFile(s.CertFile)

	again, err := EnsureSelfSigned(dir, hosts, now.Add(time.Hour))
	if err != nil || again.CreatedCA || again.RenewedServer || again.Fingerprint != s.Fingerprint {
		t.Fatalf("second start did not reuse: %+v %v", again, err)
	}
	if b, _ := os.ReadFile(s.CertFile); !bytes.Equal(b, leafPEM) {
		t.Error("serving certificate rewritten on reuse")
	}

	// A new address, or a near expiry, remakes the serving certificate
	// under the same CA: clients keep trusting what they trust.
	for _, later := range []struct {
		hosts []string
		at    time.Time
	}{
		{append(hosts, "10.1.2.3"), now},
		{hosts, now.Add(serverLifetime - renewBefore/2)},
	} {
		r, err := EnsureSelfSigned(dir, later.hosts, later.at)
		if err != nil || r.CreatedCA || !r.RenewedServer || r.Fingerprint != s.Fingerprint {
			t.Fatalf("renewal for %v at %s: %+v %v", later.hosts, later.at, r, err)
		}
	}
	if _, err := EnsureSelfSigned(dir, hosts, now.Add(caLifetime+time.Hour)); err == nil {
		t.Error("an expired CA was accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, caKeyName), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureSelfSigned(dir, hosts, now); err == nil {
		t.Error("a broken CA key was accepted")
	}
}

// TestSelfSignedServes serves HTTPS with the self-signed material and
// connects trusting only ca.crt, by name and by address; TLS 1.1 is refused.
func TestSelfSignedServes(t *testing.T) {
	dir := t.TempDir()
	s, err := EnsureSelfSigned(dir, []string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := TLSConfig(s.CertFile, s.KeyFile, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hi") }),
		TLSConfig: cfg, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	caPEM, _ := os.ReadFile(s.CACert)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, host := range []string{"localhost", "127.0.0.1"} {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := c.Get("https://" + net.JoinHostPort(host, port) + "/")
		if err != nil {
			t.Fatalf("GET over TLS via %s: %v", host, err)
		}
		resp.Body.Close()
		if resp.TLS.Version < tls.VersionTLS12 {
			t.Errorf("negotiated TLS %x", resp.TLS.Version)
		}
	}
	old := &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11, ServerName: "localhost"}
	if conn, err := tls.Dial("tcp", ln.Addr().String(), old); err == nil {
		conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
}

// TestTLSConfigReloads replaces the certificate files while "serving": the
// next handshake gets the new pair; a broken pair keeps the old one.
func TestTLSConfigReloads(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	first, err := EnsureSelfSigned(a, []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	second, err := EnsureSelfSigned(b, []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	install := func(from *SelfSigned) {
		for src, dst := range map[string]string{from.CertFile: certFile, from.KeyFile: keyFile} {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := writeFileAtomic(dst, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	serial := func(cfg *tls.Config) string {
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.String()
	}
	install(first)
	var log bytes.Buffer
	cfg, err := TLSConfig(certFile, keyFile, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s1 := serial(cfg)
	install(second)
	s2 := serial(cfg)
	if s1 == s2 {
		t.Fatal("the renewed certificate was not picked up")
	}
	if err := os.WriteFile(keyFile, []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	h1, h2 := serial(cfg), serial(cfg) // the second handshake must not log again
	if h1 != s2 || h2 != s2 {
		t.Error("a broken key replaced the working pair")
	}
	if n := bytes.Count(log.Bytes(), []byte("TLS certificate unusable")); n != 1 {
		t.Errorf("broken pair logged %d times, want once:\n%s", n, log.String())
	}
	if _, err := TLSConfig(certFile, keyFile, slog.Default()); err == nil {
		t.Error("TLSConfig accepted a broken key at start")
	}
}
