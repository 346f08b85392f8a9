package registry

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the registry's Prometheus metrics, in a registry of their
// own (never the process-global default one, so two Registry values in a
// process, as tests make, do not collide). Labels name the kind of route,
// never the repository, so their number stays bounded.
type Metrics struct {
	reg             *prometheus.Registry
	handler         http.Handler
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	bytesIn         *prometheus.CounterVec
	bytesOut        *prometheus.CounterVec
	uploadsInFlight prometheus.Gauge
	uploadsStarted  prometheus.Counter
	uploadsDone     prometheus.Counter
	loginFailures   prometheus.Counter
	throttled       prometheus.Counter
	gcRuns          *prometheus.CounterVec
	gcFreed         prometheus.Counter
}

func newMetrics() *Metrics {
	const ns = "imgtool_registry"
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_requests_total",
			Help: "HTTP requests answered, by kind of route, method and status code."}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "http_request_duration_seconds",
			Help:    "Time to answer a request, by kind of route.",
			Buckets: []float64{.001, .005, .025, .1, .5, 2.5, 10, 60, 300}}, []string{"route"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_request_bytes_total",
			Help: "Request body bytes received, by kind of route."}, []string{"route"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_response_bytes_total",
			Help: "Response body bytes sent, by kind of route."}, []string{"route"}),
		uploadsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "upload_requests_in_flight",
			Help: "Blob upload requests (POST, PATCH, PUT) this process is receiving now."}),
		uploadsStarted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "uploads_started_total",
			Help: "Upload sessions opened (202 to POST .../blobs/uploads/)."}),
		uploadsDone: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "uploads_completed_total",
			Help: "Blobs committed by an upload (201 to the final PUT, a monolithic POST or a mount)."}),
		loginFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "login_failures_total",
			Help: "Requests whose credentials were wrong."}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "login_throttled_total",
			Help: "Requests refused with 429 after too many failed logins from their address."}),
		gcRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "gc_runs_total",
			Help: "Garbage collections run, by result (ok or error)."}, []string{"result"}),
		gcFreed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "gc_freed_bytes_total",
			Help: "Bytes of storage freed by garbage collection."}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.bytesIn, m.bytesOut, m.uploadsInFlight, m.uploadsStarted,
		m.uploadsDone, m.loginFailures, m.throttled, m.gcRuns, m.gcFreed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.gcRuns.WithLabelValues("ok")
	m.gcRuns.WithLabelValues("error")
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
	return m
}

// Handler serves the metrics in Prometheus' text (or OpenMetrics) format.
func (m *Metrics) Handler() http.Handler {
	return m.handler
}

// Registerer is where other parts of the program add collectors that
// /metrics should serve.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// GCRun records one garbage collection: what it freed, or that it failed.
func (m *Metrics) GCRun(freedBytes int64, err error) {
	if err != nil {
		m.gcRuns.WithLabelValues("error").Inc()
		return
	}
	m.gcRuns.WithLabelValues("ok").Inc()
	m.gcFreed.Add(float64(max(freedBytes, 0)))
}

// isUpload tells the requests that carry blob bytes into the registry.
func isUpload(kind, method string) bool {
	return (kind == "uploads" && method == http.MethodPost) ||
		(kind == "upload" && (method == http.MethodPatch || method == http.MethodPut))
}

// begin marks a request's start; the returned function records its end.
func (m *Metrics) begin(kind, method string) func(status int, in, out int64) {
	start := time.Now()
	upload := isUpload(kind, method)
	if upload {
		m.uploadsInFlight.Inc()
	}
	return func(status int, in, out int64) {
		if upload {
			m.uploadsInFlight.Dec()
		}
		switch {
		case kind == "uploads" && status == http.StatusAccepted:
			m.uploadsStarted.Inc()
		case upload && status == http.StatusCreated:
			m.uploadsDone.Inc()
		}
		m.requests.WithLabelValues(kind, methodLabel(method), strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
		m.bytesIn.WithLabelValues(kind).Add(float64(in))
		m.bytesOut.WithLabelValues(kind).Add(float64(out))
	}
}

// methodLabel keeps the method label's values to the ones HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// countingBody counts the request body bytes a handler reads.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}
