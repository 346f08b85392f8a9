package registry

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// closeWait bounds how long a stop waits, after http.Server.Close, for
// handlers still running. Close only closes their connections; it does
// not wait for them, and the process would exit before they write their
// access-log line or save what an upload received (appendBody does so
// with a context that ignores the client). With their connections gone
// they normally return at once, so the bound only matters when storage
// hangs (an S3 request without an answer): 10 s covers a slow storage
// round trip or two, while a stuck backend still cannot hold the process
// past --grace plus this.
const closeWait = 10 * time.Second

// inflight counts the handler calls of h still running. It counts by hand
// rather than with a sync.WaitGroup because http.Server may still start a
// handler (a request read just before Close) while wait is waiting, and
// wait needs a timeout.
type inflight struct {
	h    http.Handler
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0
}

func (f *inflight) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.n--
		if f.n == 0 {
			close(f.idle)
		}
		f.mu.Unlock()
	}()
	f.h.ServeHTTP(w, r)
}

// wait returns once no handler is running, or an error saying how many
// still are after timeout.
func (f *inflight) wait(timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		n, idle := f.n, f.idle
		f.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-deadline.C:
			f.mu.Lock()
			n = f.n
			f.mu.Unlock()
			if n == 0 {
				return nil
			}
			return fmt.Errorf("%d requests still running %s after their connections were closed", n, timeout)
		}
	}
}
