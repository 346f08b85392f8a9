package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Serve answers the registry's API on ln (with TLS when Options.TLS is
// set) until ctx is done, then stops accepting connections and lets
// requests in flight finish for up to grace before closing what is left
// (and waiting, within closeWait, for the handlers cut off to return).
// Meanwhile it purges abandoned upload sessions (Options.UploadTTL) at
// start and hourly.
func (g *Registry) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	if g.opts.UploadTTL > 0 {
		purgeCtx, stopPurge := context.WithCancel(ctx)
		defer stopPurge()
		go g.purgeLoop(purgeCtx, g.opts.UploadTTL, min(g.opts.UploadTTL, time.Hour))
	}
	return serveHTTP(ctx, ln, g, g.opts.TLS, grace, "registry")
}

// ServeMetrics answers /metrics and /healthz (and nothing else, without
// authentication) on ln, an address of their own, until ctx is done.
func (g *Registry) ServeMetrics(ctx context.Context, ln net.Listener, grace time.Duration) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", g.metrics.Handler())
	mux.HandleFunc("/healthz", g.serveHealth)
	return serveHTTP(ctx, ln, mux, nil, grace, "metrics")
}

func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, tlsConfig *tls.Config, grace time.Duration, what string) error {
	running := &inflight{h: h}
	srv := &http.Server{
		Handler:           running,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	done := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			done <- srv.ServeTLS(ln, "", "")
		} else {
			done <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-done:
		return fmt.Errorf("serve %s on %s: %w", what, ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(shutdown)
	if errors.Is(err, context.DeadlineExceeded) {
		err = errors.Join(srv.Close(), running.wait(closeWait))
	}
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("stop %s on %s: %w", what, ln.Addr(), err)
	}
	return nil
}
