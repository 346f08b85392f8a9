package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Serve answers the registry's API on ln until ctx is done, then stops
// accepting connections and lets requests in flight finish for up to
// grace before closing what is left. Meanwhile it purges abandoned upload
// sessions (Options.UploadTTL) at start and hourly.
func (g *Registry) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	if g.opts.UploadTTL > 0 {
		purgeCtx, stopPurge := context.WithCancel(ctx)
		defer stopPurge()
		go g.purgeLoop(purgeCtx, g.opts.UploadTTL, min(g.opts.UploadTTL, time.Hour))
	}
	select {
	case err := <-done:
		return fmt.Errorf("serve registry on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(shutdown)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("stop registry on %s: %w", ln.Addr(), err)
	}
	return nil
}
