package registry

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// Options tune a Registry.
type Options struct {
	// AllowSparse accepts manifests whose blobs or child manifests are not
	// (yet) in the repository, as mirrors of single platforms produce;
	// by default they are refused with MANIFEST_BLOB_UNKNOWN.
	AllowSparse bool
	// Logger receives one access-log line per request; nil logs nothing.
	Logger *slog.Logger
	// UploadTTL is how long an upload session may stay unfinished before
	// Serve deletes it; 0 keeps sessions forever.
	UploadTTL time.Duration
	// Access is who may do what (auth, anonymous read, read-only).
	Access Access
	// HealthTimeout bounds /healthz's storage check (default 5s).
	HealthTimeout time.Duration
	// TLS, when set, makes Serve answer HTTPS (see TLSConfig).
	TLS *tls.Config
	// HideMetrics leaves /metrics off the API's handler, for when the
	// metrics are served on an address of their own (Metrics().Handler()).
	HideMetrics bool
}

// Registry serves the OCI distribution API over a storage driver.
type Registry struct {
	driver  storagedriver.StorageDriver
	opts    Options
	metrics *Metrics
	limiter *loginLimiter
}

// New returns the registry over driver.
func New(driver storagedriver.StorageDriver, opts Options) *Registry {
	g := &Registry{driver: driver, opts: opts, metrics: newMetrics(),
		limiter: newLoginLimiter(opts.Access.Limit, time.Now)}
	g.metrics.reg.MustRegister(newLastGCCollector(g))
	return g
}

// Metrics are the registry's Prometheus metrics; GC reports its runs here.
func (g *Registry) Metrics() *Metrics { return g.metrics }

// route is what a request path names: the repository and the rest.
type route struct {
	name string
	kind string // "manifest", "blob", "upload", "uploads", "tags", "referrers"
	ref  string
}

// parseRoute splits a path under /v2/ from its end, since repository names
// contain slashes and may even contain components such as "manifests".
func parseRoute(p string) (route, bool) {
	segs := strings.Split(p, "/")
	n := len(segs)
	switch {
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		return route{name: strings.Join(segs[:n-2], "/"), kind: "tags"}, true
	case n >= 2 && segs[n-2] == "manifests":
		return route{name: strings.Join(segs[:n-2], "/"), kind: "manifest", ref: segs[n-1]}, true
	case n >= 2 && segs[n-2] == "referrers":
		return route{name: strings.Join(segs[:n-2], "/"), kind: "referrers", ref: segs[n-1]}, true
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		return route{name: strings.Join(segs[:n-2], "/"), kind: "uploads"}, true
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		if segs[n-1] == "" {
			return route{name: strings.Join(segs[:n-3], "/"), kind: "uploads"}, true
		}
		return route{name: strings.Join(segs[:n-3], "/"), kind: "upload", ref: segs[n-1]}, true
	case n >= 2 && segs[n-2] == "blobs":
		return route{name: strings.Join(segs[:n-2], "/"), kind: "blob", ref: segs[n-1]}, true
	}
	return route{}, false
}

// ServeHTTP answers the distribution API under /v2/, /healthz and
// /metrics, behind the gate of Options.Access.
func (g *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	lw := &logWriter{ResponseWriter: w, status: http.StatusOK}
	kind := routeKind(r.URL.Path)
	if (kind == "metrics" && g.opts.HideMetrics) || (kind == "token" && g.opts.Access.Tokens == nil) {
		kind = "other"
	}
	body := &countingBody{ReadCloser: r.Body}
	r.Body = body
	end := g.metrics.begin(kind, r.Method)
	if g.gate(lw, r, kind) {
		switch kind {
		case "healthz":
			g.serveHealth(lw, r)
		case "metrics":
			g.metrics.Handler().ServeHTTP(lw, r)
		case "token":
			g.serveToken(lw, r)
		default:
			g.serve(lw, r)
		}
	}
	end(lw.status, body.n, lw.bytes)
	if g.opts.Logger != nil {
		g.opts.Logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("remote", r.RemoteAddr), slog.String("method", r.Method),
			slog.String("path", r.URL.RequestURI()), slog.Int("status", lw.status),
			slog.Int64("bytes", lw.bytes), slog.Duration("duration", time.Since(start)),
			slog.String("agent", r.UserAgent()))
	}
}

func (g *Registry) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := r.URL.Path
	if p == "/v2" || p == "/v2/" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, r, newError(errUnsupported, "method %s not allowed on /v2/", r.Method))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte("{}"))
		}
		return
	}
	if !strings.HasPrefix(p, "/v2/") {
		writeError(w, r, newError(errNoEndpoint, "no such endpoint %s", p))
		return
	}
	p = strings.TrimPrefix(p, "/v2/")
	if p == "_catalog" {
		g.method(w, r, map[string]handlerFunc{http.MethodGet: g.getCatalog}, route{})
		return
	}
	rt, ok := parseRoute(p)
	if !ok {
		writeError(w, r, newError(errNoEndpoint, "no such endpoint /v2/%s", p))
		return
	}
	if !validName(rt.name) {
		writeError(w, r, newError(errNameInvalid, "invalid repository name %q", rt.name))
		return
	}
	var handlers map[string]handlerFunc
	switch rt.kind {
	case "manifest":
		handlers = map[string]handlerFunc{http.MethodGet: g.getManifest, http.MethodHead: g.getManifest,
			http.MethodPut: g.putManifest, http.MethodDelete: g.deleteManifest}
	case "blob":
		handlers = map[string]handlerFunc{http.MethodGet: g.getBlob, http.MethodHead: g.getBlob,
			http.MethodDelete: g.deleteBlob}
	case "uploads":
		handlers = map[string]handlerFunc{http.MethodPost: g.startUpload}
	case "upload":
		handlers = map[string]handlerFunc{http.MethodGet: g.uploadStatus, http.MethodPatch: g.patchUpload,
			http.MethodPut: g.finishUpload, http.MethodDelete: g.cancelUpload}
	case "tags":
		handlers = map[string]handlerFunc{http.MethodGet: g.listTags}
	case "referrers":
		handlers = map[string]handlerFunc{http.MethodGet: g.getReferrers}
	}
	g.method(w, r, handlers, rt)
}

type handlerFunc func(http.ResponseWriter, *http.Request, route) error

func (g *Registry) method(w http.ResponseWriter, r *http.Request, handlers map[string]handlerFunc, rt route) {
	h, ok := handlers[r.Method]
	if !ok {
		writeError(w, r, newError(errUnsupported, "method %s not allowed on %s", r.Method, r.URL.Path))
		return
	}
	if err := h(w, r, rt); err != nil {
		writeError(w, r, err)
	}
}

// logWriter records what the access log reports.
type logWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (l *logWriter) WriteHeader(code int) {
	if !l.wroteHeader {
		l.status, l.wroteHeader = code, true
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.wroteHeader = true
	n, err := l.ResponseWriter.Write(p)
	l.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the ResponseWriter's own ReadFrom reachable through the
// wrapper: given the *os.File the filesystem driver reads blobs from, it
// sends them with sendfile(2) instead of copying every byte through user
// space. Other sources (S3's response bodies) are copied as before.
func (l *logWriter) ReadFrom(r io.Reader) (int64, error) {
	l.wroteHeader = true
	var n int64
	var err error
	if rf, ok := l.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{l.ResponseWriter}, r)
	}
	l.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (l *logWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }
