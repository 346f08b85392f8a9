//go:build !imgtool_lean

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/imgtool/imgtool/registry"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
)

// serveSecurity holds `registry serve`'s flags for TLS, authentication,
// read-only mode, metrics and the config file.
type serveSecurity struct {
	config        string
	tlsCert       string
	tlsKey        string
	tlsSelfSigned bool
	tlsHosts      []string
	htpasswd      string
	anonymousRead bool
	readOnly      bool
	loginFailures int
	loginWindow   time.Duration
	metricsAddr   string
	healthTimeout time.Duration
	tokenAuth     bool
	tokenKey      string
	tokenTTL      time.Duration
	tokenRealm    string

	metricsLn net.Listener
}

func (s *serveSecurity) addFlags(f *pflag.FlagSet) {
	f.StringVar(&s.config, "config", "", "YAML `FILE` of settings; its keys are these flags' long names, flags given here win")
	f.StringVar(&s.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain) `FILE`; re-read when it changes")
	f.StringVar(&s.tlsKey, "tls-key", "", "PEM private key `FILE` of --tls-cert")
	f.BoolVar(&s.tlsSelfSigned, "tls-self-signed", false, "serve HTTPS with a certificate made (once) under <root>/registry-tls; prints what clients should trust")
	f.StringArrayVar(&s.tlsHosts, "tls-host", nil, "extra DNS name or IP address for the --tls-self-signed certificate (repeatable)")
	f.StringVar(&s.htpasswd, "htpasswd", "", "require logins from this htpasswd `FILE` of bcrypt hashes (made by imgtool registry user add); re-read when it changes")
	f.BoolVar(&s.anonymousRead, "anonymous-read", false, "with --htpasswd: let pulls through without credentials; pushes and deletes still need them")
	f.BoolVar(&s.readOnly, "read-only", false, "refuse every push, upload and delete with 405 UNSUPPORTED")
	f.IntVar(&s.loginFailures, "login-failures", 10, "failed logins an address may make in a row before it gets 429 (0: no limit)")
	f.DurationVar(&s.loginWindow, "login-window", time.Minute, "time in which an address earns back --login-failures tries")
	f.StringVar(&s.metricsAddr, "metrics-addr", "", "serve /metrics and /healthz on this address only, unauthenticated (default: on --addr, behind the login)")
	f.DurationVar(&s.healthTimeout, "health-timeout", 5*time.Second, "how long /healthz waits for the storage driver")
	f.BoolVar(&s.tokenAuth, "token-auth", false, "with --htpasswd: challenge with the bearer-token flow and issue tokens at /token (Basic keeps working)")
	f.StringVar(&s.tokenKey, "token-key", "", "`FILE` of the key that signs tokens, made if absent; replicas share it (default <root>/registry-token.key)")
	f.DurationVar(&s.tokenTTL, "token-ttl", 10*time.Minute, "lifetime of a token")
	f.StringVar(&s.tokenRealm, "token-realm", "", "URL of /token as clients reach it (default: from each request's scheme and Host)")
}

// loadConfig applies --config, then re-checks the global flags it may have
// set (such as --log-level).
func (s *serveSecurity) loadConfig(cmd *cobra.Command, o *globalOptions) error {
	if s.config == "" {
		return nil
	}
	if err := applyConfigFile(cmd, s.config); err != nil {
		return err
	}
	return o.validate()
}

// configure checks the flags and fills opts: TLS material, the users file,
// the metrics listener. It runs before the API's address is printed, so a
// bad setting fails the command before any client is told to connect.
func (s *serveSecurity) configure(stderr io.Writer, root, addr string, opts *registry.Options) error {
	switch {
	case (s.tlsCert == "") != (s.tlsKey == ""):
		return usageError{errors.New("--tls-cert and --tls-key go together")}
	case s.tlsCert != "" && s.tlsSelfSigned:
		return usageError{errors.New("--tls-self-signed makes its own certificate: drop --tls-cert/--tls-key or it")}
	case s.anonymousRead && s.htpasswd == "":
		return usageError{errors.New("--anonymous-read needs --htpasswd (without it everybody may read and write)")}
	case s.loginFailures < 0 || s.loginWindow <= 0:
		return usageError{errors.New("--login-failures must be 0 or more and --login-window positive")}
	case s.tokenAuth && s.htpasswd == "":
		return usageError{errors.New("--token-auth needs --htpasswd: tokens are issued for its users")}
	case s.tokenAuth && s.tokenTTL <= 0:
		return usageError{errors.New("--token-ttl must be positive")}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := s.configureTLS(stderr, root, log, opts); err != nil {
		return err
	}
	opts.Access = registry.Access{AnonymousRead: s.anonymousRead, ReadOnly: s.readOnly,
		Limit: registry.LoginLimit{Failures: s.loginFailures, Window: s.loginWindow}}
	opts.HealthTimeout = s.healthTimeout
	if s.htpasswd != "" {
		users, err := registry.OpenHtpasswd(s.htpasswd, log)
		if err != nil {
			return err
		}
		opts.Access.Auth = users
		if s.tokenAuth {
			keyFile := s.tokenKey
			if keyFile == "" {
				keyFile = filepath.Join(root, "registry-token.key")
			}
			key, err := registry.LoadTokenKey(keyFile)
			if err != nil {
				return err
			}
			opts.Access.Tokens = &registry.Tokens{Key: key, TTL: s.tokenTTL, Realm: s.tokenRealm}
		}
		if opts.TLS == nil && !isLoopback(addr) {
			log.Warn("passwords will cross the network in clear text: serve with --tls-cert/--tls-key or --tls-self-signed")
		}
	}
	if s.metricsAddr != "" {
		ln, err := net.Listen("tcp", s.metricsAddr)
		if err != nil {
			return fmt.Errorf("listen for metrics on %s: %w", s.metricsAddr, err)
		}
		s.metricsLn = ln
		opts.HideMetrics = true
		fmt.Fprintf(stderr, "metrics and health on http://%s/metrics and /healthz\n", ln.Addr())
	}
	return nil
}

func (s *serveSecurity) configureTLS(stderr io.Writer, root string, log *slog.Logger, opts *registry.Options) error {
	cert, key := s.tlsCert, s.tlsKey
	if s.tlsSelfSigned {
		dir := filepath.Join(root, "registry-tls")
		ss, err := registry.EnsureSelfSigned(dir, append(registry.LocalHosts(), s.tlsHosts...), time.Now())
		if err != nil {
			return err
		}
		cert, key = ss.CertFile, ss.KeyFile
		what := "existing"
		if ss.CreatedCA {
			what = "new"
		}
		fmt.Fprintf(stderr, "TLS: self-signed; clients trust the %s CA %s\n", what, ss.CACert)
		fmt.Fprintf(stderr, "TLS: CA SHA-256 fingerprint %s\n", ss.Fingerprint)
		fmt.Fprintf(stderr, "TLS: e.g. skopeo --cert-dir %s, or copy it to /etc/containers/certs.d/HOST:PORT/ca.crt (podman) or /etc/docker/certs.d/HOST:PORT/ca.crt (docker)\n", dir)
	} else if len(s.tlsHosts) > 0 {
		return usageError{errors.New("--tls-host names hosts for --tls-self-signed only")}
	}
	if cert == "" {
		return nil
	}
	cfg, err := registry.TLSConfig(cert, key, log)
	if err != nil {
		return err
	}
	opts.TLS = cfg
	return nil
}

// serve runs the registry on ln, and its metrics on their own address
// when --metrics-addr asked for one, until ctx is done.
func (s *serveSecurity) serve(ctx context.Context, reg *registry.Registry, ln net.Listener, grace time.Duration) error {
	if s.metricsLn == nil {
		return reg.Serve(ctx, ln, grace)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return reg.Serve(ctx, ln, grace) })
	g.Go(func() error { return reg.ServeMetrics(ctx, s.metricsLn, grace) })
	return g.Wait()
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
