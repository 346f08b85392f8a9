package registry

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The self-signed TLS directory (--tls-self-signed), under the data root:
//
//	registry-tls/
//	├── ca.crt           the certificate clients trust (a CA of its own, 10 years)
//	├── ca-key.pem       its key (0600)
//	├── server-cert.pem  the serving certificate, signed by ca.crt, with the
//	│                    host's names and addresses (825 days)
//	└── server-key.pem   its key (0600)
//
// Replicas starting together serialize on a lock of the directory.
// Clients trust ca.crt once; the serving certificate is remade under it
// when it nears expiry or the host gains a name or address, and nobody has
// to trust anything again. The names avoid the .key and .cert suffixes,
// which docker's certs.d and skopeo's --cert-dir read as client
// certificates, so the directory itself can be given to --cert-dir.
const (
	caCertName     = "ca.crt"
	caKeyName      = "ca-key.pem"
	serverCertName = "server-cert.pem"
	serverKeyName  = "server-key.pem"
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 825 * 24 * time.Hour // the longest validity Apple's TLS clients accept
	renewBefore    = 30 * 24 * time.Hour
)

// SelfSigned says where the self-signed material is and what it is.
type SelfSigned struct {
	CACert      string // the file clients should trust
	CertFile    string // serving certificate (for TLSConfig)
	KeyFile     string
	Fingerprint string // SHA-256 of CACert's DER, as colon-separated hex
	// CreatedCA is true when this call made a new CA (clients must trust it);
	// RenewedServer when it made a new serving certificate.
	CreatedCA, RenewedServer bool
}

// EnsureSelfSigned makes, or reuses, a CA and a serving certificate for
// hosts (names and IP addresses) in dir.
func EnsureSelfSigned(dir string, hosts []string, now time.Time) (*SelfSigned, error) {
	if len(hosts) == 0 {
		return nil, errors.New("self-signed certificate: no host names")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("self-signed TLS directory: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s := &SelfSigned{CACert: filepath.Join(dir, caCertName), CertFile: filepath.Join(dir, serverCertName),
		KeyFile: filepath.Join(dir, serverKeyName)}
	ca, caKey, err := loadPair(s.CACert, filepath.Join(dir, caKeyName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ca, caKey, err = newCA(dir, now)
		if err != nil {
			return nil, err
		}
		s.CreatedCA = true
	case err != nil:
		return nil, fmt.Errorf("self-signed CA in %s: %w (remove the directory to make a new one; clients must then trust the new ca.crt)", dir, err)
	case now.After(ca.NotAfter):
		return nil, fmt.Errorf("self-signed CA %s expired on %s (remove %s to make a new one; clients must then trust the new ca.crt)", s.CACert, ca.NotAfter.Format(time.DateOnly), dir)
	}
	sum := sha256.Sum256(ca.Raw)
	hexes := make([]string, len(sum))
	for i, b := range sum {
		hexes[i] = fmt.Sprintf("%02X", b)
	}
	s.Fingerprint = strings.Join(hexes, ":")
	leaf, _, err := loadPair(s.CertFile, s.KeyFile)
	if err != nil || !leafFits(leaf, ca, hosts, now) {
		if err := newServerCert(s, ca, caKey, hosts, now); err != nil {
			return nil, err
		}
		s.RenewedServer = true
	}
	return s, nil
}

// leafFits tells whether the serving certificate can stay: signed by ca,
// not near expiry, and naming every host.
func leafFits(leaf, ca *x509.Certificate, hosts []string, now time.Time) bool {
	if leaf.CheckSignatureFrom(ca) != nil || now.Add(renewBefore).After(leaf.NotAfter) {
		return false
	}
	for _, h := range hosts {
		ip := net.ParseIP(h)
		named := slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return strings.EqualFold(n, h) })
		addressed := ip != nil && slices.ContainsFunc(leaf.IPAddresses, ip.Equal)
		if !named && !addressed {
			return false
		}
	}
	return true
}

func loadPair(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM", certFile, keyFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", certFile, err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", keyFile, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the key of %s", keyFile, certFile)
	}
	return cert, key, nil
}

func newCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "imgtool registry CA " + host, Organization: []string{"imgtool"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	cert, key, err := writeCert(tmpl, nil, nil, filepath.Join(dir, caCertName), filepath.Join(dir, caKeyName))
	if err != nil {
		return nil, nil, fmt.Errorf("make self-signed CA: %w", err)
	}
	return cert, key, nil
}

func newServerCert(s *SelfSigned, ca *x509.Certificate, caKey crypto.Signer, hosts []string, now time.Time) error {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"imgtool"}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(serverLifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if _, _, err := writeCert(tmpl, ca, caKey, s.CertFile, s.KeyFile); err != nil {
		return fmt.Errorf("make TLS serving certificate: %w", err)
	}
	return nil
}

// writeCert makes a P-256 key, signs tmpl with parent (itself when
// parent is nil) and writes both, the key first and 0600, each atomically.
func writeCert(tmpl, parent *x509.Certificate, parentKey crypto.Signer, certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// LocalHosts are the names and addresses this machine answers to:
// "localhost" (first: it becomes the serving certificate's common name),
// its host name, the loopback addresses and every address of its
// interfaces except link-local ones (which need a zone to be dialled).
func LocalHosts() []string {
	hosts := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	hosts = append(hosts, "127.0.0.1", "::1")
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
				hosts = append(hosts, n.IP.String())
			}
		}
	}
	seen := map[string]bool{}
	return slices.DeleteFunc(hosts, func(h string) bool {
		dup := seen[h]
		seen[h] = true
		return dup
	})
}
