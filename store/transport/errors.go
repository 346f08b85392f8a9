package transport

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/imgtool/imgtool/store"
)

// Sentinel errors for the failures users act on differently.
var (
	ErrUnauthorized = errors.New("authentication required")
	ErrDenied       = errors.New("access denied")
	ErrUnreachable  = errors.New("registry unreachable")
)

// explainRemote turns a registry failure into one line that says what was
// being done, on what, and what to do about it.
func explainRemote(op string, ref name.Reference, err error) error {
	reg := ref.Context().RegistryStr()
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("%s %s: %w by %s: run `imgtool login %s` (%v)", op, ref, ErrUnauthorized, reg, reg, err)
		case http.StatusForbidden:
			return fmt.Errorf("%s %s: %w by %s: the credentials lack permission for this repository (%v)", op, ref, ErrDenied, reg, err)
		case http.StatusNotFound:
			return fmt.Errorf("%s %s: %w on %s (%v)", op, ref, store.ErrNotFound, reg, err)
		}
		return fmt.Errorf("%s %s: %w", op, ref, err)
	}
	var x509err x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &x509err) || errors.As(err, &hostErr) {
		return fmt.Errorf("%s %s: TLS certificate of %s not trusted: add its CA to the system store, or use --insecure (%v)", op, ref, reg, err)
	}
	var netErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &netErr) || errors.As(err, &dnsErr) {
		return fmt.Errorf("%s %s: %w: cannot connect to %s: check the address and that the registry is running (%v)", op, ref, ErrUnreachable, reg, err)
	}
	return fmt.Errorf("%s %s: %w", op, ref, err)
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}
