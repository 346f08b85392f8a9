package registry

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// defaultHealthTimeout bounds the storage check of /healthz when
// Options.HealthTimeout is unset: a load balancer should hear "unhealthy"
// from a registry whose storage hangs, not wait with it.
const defaultHealthTimeout = 5 * time.Second

// checkStorage asks the storage driver about the layout's root. An absent
// root is healthy (an empty registry on a fresh bucket): the driver
// answered, which is what is being checked.
func (g *Registry) checkStorage(ctx context.Context) error {
	timeout := g.opts.HealthTimeout
	if timeout <= 0 {
		timeout = defaultHealthTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	errc := make(chan error, 1)
	// Not every driver honours ctx while blocked in I/O; the check answers
	// at the deadline even if the driver does not.
	go func() {
		_, err := g.driver.Stat(ctx, layoutRoot)
		errc <- err
	}()
	select {
	case err := <-errc:
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("storage driver %s: %w", g.driver.Name(), err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("storage driver %s: no answer within %s", g.driver.Name(), timeout)
	}
}

// serveHealth answers /healthz: 200 "ok" when storage answers, 503 with
// the reason when it does not.
func (g *Registry) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if err := g.checkStorage(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte("ok\n"))
	}
}
