package main_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// TestBuildCacheDistribution: the registry cache is an image manifest
// that distribution (registry:2), which checks every manifest it is
// given, accepts and serves back.
func TestBuildCacheDistribution(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	config := &configuration.Configuration{Storage: configuration.Storage{"inmemory": configuration.Parameters{}}}
	config.HTTP.Secret = "test"
	config.Log.Level = "error"
	srv := httptest.NewServer(handlers.NewApp(context.Background(), config))
	defer srv.Close()
	reg := strings.TrimPrefix(srv.URL, "http://")

	a := newCLI(t)
	busyboxBase(t, a)
	a.ok("push", "base:1", reg+"/lib/base:1")
	df := strings.ReplaceAll(cacheRunsDockerfile, "FROM base:1", "FROM "+reg+"/lib/base:1")
	dir := writeContext(t, t.TempDir(), map[string]string{"Dockerfile": df, "a": "a\n", "b": "b\n"})
	want, _ := buildCounted(t, a, dir, "app:1", "--cache-to", "type=registry,ref="+reg+"/cache/app:main")

	b := newCLI(t)
	got, cached := buildCounted(t, b, dir, "app:1", "--cache-from", "type=registry,ref="+reg+"/cache/app:main")
	if cached != 4 || got != want || runsLog(t, b) != "" {
		t.Errorf("from distribution: %d cached (want 4), %s (want %s), runs %q", cached, got, want, runsLog(t, b))
	}
}
