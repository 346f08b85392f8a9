package registry

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// TLSConfig serves the certificate chain and key in the PEM files
// certFile and keyFile, TLS 1.2 and later only (Go's default cipher suites
// for 1.2 are the ECDHE AEAD ones). The files are checked on every
// handshake (two stats) and re-read when they change, so a renewed
// certificate takes effect without a restart; a pair that does not load
// any more is logged and the previous one stays in use.
func TLSConfig(certFile, keyFile string, log *slog.Logger) (*tls.Config, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.get,
		NextProtos:     []string{"h2", "http/1.1"},
	}, nil
}

type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu     sync.Mutex
	cert   *tls.Certificate
	stamps [2]fileStamp
	failed [2]fileStamp
}

func (r *certReloader) stat() ([2]fileStamp, error) {
	var st [2]fileStamp
	for i, p := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(p)
		if err != nil {
			return st, err
		}
		st[i] = stampOf(fi)
	}
	return st, nil
}

func (r *certReloader) load() error {
	st, err := r.stat()
	if err != nil {
		return fmt.Errorf("load TLS certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.stamps = &cert, st
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stat()
	if err == nil && st[0].equal(r.stamps[0]) && st[1].equal(r.stamps[1]) {
		return r.cert, nil
	}
	if err == nil && st[0].equal(r.failed[0]) && st[1].equal(r.failed[1]) {
		return r.cert, nil // already logged; wait for the next change
	}
	if err == nil {
		err = r.load()
	}
	if err != nil {
		r.failed = st
		r.log.Error("TLS certificate unusable; serving the previous one", slog.String("cert", r.certFile), slog.Any("err", err))
		return r.cert, nil
	}
	r.log.Info("TLS certificate reloaded", slog.String("cert", r.certFile))
	return r.cert, nil
}
