package registry

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CollectEvery runs a garbage collection every interval until ctx is done,
// counting each in the registry's metrics and logging what it freed. It is
// what `registry serve --gc-interval` runs: the same collection as
// `imgtool registry gc`, safe beside pushes (gc.go), so scheduling it needs
// no cron job and no maintenance window. A failed run is logged and the
// next one tries again.
func (g *Registry) CollectEvery(ctx context.Context, interval time.Duration, opts GCOptions, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep, err := g.GC(ctx, opts)
		if ctx.Err() != nil {
			return
		}
		g.metrics.GCRun(rep.Bytes, err)
		if log == nil {
			continue
		}
		if err != nil {
			log.Warn("garbage collection failed", "err", err)
			continue
		}
		log.Info("garbage collection", "manifests", rep.Manifests, "blobs", rep.Blobs,
			"bytes", rep.Bytes, "links", rep.Links, "uploads", rep.Uploads, "duration", rep.Duration)
	}
}

// lastGCCollector reports when the last collection over this storage
// ended, from the record every collection rewrites (gcguard.go), so that
// runs of `imgtool registry gc` in other processes, or on other replicas,
// show on every replica's /metrics.
type lastGCCollector struct {
	g    *Registry
	desc *prometheus.Desc
}

func newLastGCCollector(g *Registry) *lastGCCollector {
	return &lastGCCollector{g: g, desc: prometheus.NewDesc("imgtool_registry_gc_last_run_timestamp_seconds",
		"When the last garbage collection over this registry's storage ended (Unix time), by any process.", nil, nil)}
}

func (c *lastGCCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lastGCCollector) Collect(ch chan<- prometheus.Metric) {
	// A scrape must not hang on slow storage; no answer means no sample.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fi, err := c.g.driver.Stat(ctx, gcDonePath())
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(fi.ModTime().UnixNano())/1e9)
}
