package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
)

// fakeAuth accepts one user and password and counts its checks.
type fakeAuth struct{ checks int }

func (f *fakeAuth) Authenticate(_ context.Context, user, password string) (bool, error) {
	f.checks++
	return user == "alice" && password == "right", nil
}

func TestAccessDecide(t *testing.T) {
	auth := &fakeAuth{}
	for _, tc := range []struct {
		name    string
		access  Access
		kind    string
		write   bool
		creds   string // "", "good", "bad"
		limited bool
		want    verdict
		checked bool // whether the password had to be checked
	}{
		{"open registry pull", Access{}, "manifest", false, "", false, allow, false},
		{"open registry push", Access{}, "upload", true, "", false, allow, false},
		{"read-only push without auth", Access{ReadOnly: true}, "uploads", true, "", false, refuse, false},
		{"read-only delete with good creds", Access{Auth: auth, ReadOnly: true}, "manifest", true, "good", false, refuse, false},
		{"read-only pull", Access{ReadOnly: true}, "blob", false, "", false, allow, false},
		{"auth: no creds pull", Access{Auth: auth}, "manifest", false, "", false, challenge, false},
		{"auth: good creds push", Access{Auth: auth}, "upload", true, "good", false, allow, true},
		{"auth: bad creds pull", Access{Auth: auth}, "blob", false, "bad", false, challenge, true},
		{"auth: no creds /v2/", Access{Auth: auth}, "base", false, "", false, challenge, false},
		{"auth: good creds /v2/", Access{Auth: auth}, "base", false, "good", false, allow, true},
		{"auth: healthz stays open", Access{Auth: auth}, "healthz", false, "", false, allow, false},
		{"auth: metrics need creds", Access{Auth: auth}, "metrics", false, "", false, challenge, false},
		{"anonymous read: pull", Access{Auth: auth, AnonymousRead: true}, "manifest", false, "", false, allow, false},
		{"anonymous read: catalog", Access{Auth: auth, AnonymousRead: true}, "catalog", false, "", false, allow, false},
		{"anonymous read: push refused", Access{Auth: auth, AnonymousRead: true}, "uploads", true, "", false, challenge, false},
		{"anonymous read: /v2/ still challenges", Access{Auth: auth, AnonymousRead: true}, "base", false, "", false, challenge, false},
		{"anonymous read: wrong creds are not ignored", Access{Auth: auth, AnonymousRead: true}, "manifest", false, "bad", false, challenge, true},
		{"limited address: refused before the check", Access{Auth: auth}, "upload", true, "good", true, throttle, false},
		{"limited address without creds: challenged", Access{Auth: auth, AnonymousRead: true}, "blob", false, "", true, allow, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			auth.checks = 0
			q := gateRequest{kind: tc.kind, write: tc.write, hasCreds: tc.creds != "",
				limited: func() bool { return tc.limited },
				verify: func() bool {
					ok, _ := auth.Authenticate(context.Background(), "alice", map[string]string{"good": "right", "bad": "wrong"}[tc.creds])
					return ok
				}}
			if got := tc.access.decide(q); got != tc.want {
				t.Errorf("decide = %d, want %d", got, tc.want)
			}
			if checked := auth.checks > 0; checked != tc.checked {
				t.Errorf("password checked: %v, want %v", checked, tc.checked)
			}
		})
	}
}

// TestGateAnswers checks the HTTP answers of the gate: headers and the
// spec's JSON error bodies.
func TestGateAnswers(t *testing.T) {
	auth := &fakeAuth{}
	c := newClient(t, inmemory.New(), Options{Access: Access{Auth: auth, AnonymousRead: true,
		Limit: LoginLimit{Failures: 2, Window: time.Minute}}})
	basic := func(user, pass string) []string {
		return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
	}

	w := c.do("GET", "/v2/", nil)
	c.want(w, http.StatusUnauthorized, "UNAUTHORIZED")
	if got := w.Header().Get("WWW-Authenticate"); got != `Basic realm="imgtool"` {
		t.Errorf("WWW-Authenticate = %q", got)
	}
	c.want(c.do("GET", "/v2/", nil, basic("alice", "right")...), http.StatusOK, "")
	c.want(c.do("POST", "/v2/a/blobs/uploads/", nil), http.StatusUnauthorized, "UNAUTHORIZED")
	c.want(c.do("POST", "/v2/a/blobs/uploads/", nil, basic("alice", "right")...), http.StatusAccepted, "")
	c.want(c.do("GET", "/v2/b/tags/list", nil), http.StatusNotFound, "NAME_UNKNOWN") // anonymous read reaches the handler

	// Two failures from one address use up its budget; the third attempt,
	// even with the right password, is refused without being checked.
	c.want(c.do("GET", "/v2/", nil, basic("alice", "guess1")...), http.StatusUnauthorized, "UNAUTHORIZED")
	c.want(c.do("GET", "/v2/", nil, basic("mallory", "guess2")...), http.StatusUnauthorized, "UNAUTHORIZED")
	auth.checks = 0
	w = c.do("GET", "/v2/", nil, basic("alice", "right")...)
	c.want(w, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if ra := w.Header().Get("Retry-After"); ra != "30" {
		t.Errorf("Retry-After = %q, want 30 (one try per 30s)", ra)
	}
	if auth.checks != 0 {
		t.Error("a throttled login was checked")
	}

	ro := newClient(t, inmemory.New(), Options{Access: Access{ReadOnly: true}})
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		w := ro.do(m, "/v2/a/blobs/uploads/", nil)
		ro.want(w, http.StatusMethodNotAllowed, "UNSUPPORTED")
		if w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s on a read-only registry: Allow = %q", m, w.Header().Get("Allow"))
		}
	}
	ro.want(ro.do("DELETE", "/v2/a/manifests/latest", nil), http.StatusMethodNotAllowed, "UNSUPPORTED")
	ro.want(ro.do("GET", "/v2/", nil), http.StatusOK, "")
}

func TestHealthAndMetrics(t *testing.T) {
	drv := inmemory.New()
	g := New(drv, Options{})
	c := &client{t: t, h: g}
	w := c.do("GET", "/healthz", nil)
	if w.Code != http.StatusOK || w.Body.String() != "ok\n" {
		t.Fatalf("healthz: %d %q", w.Code, w.Body)
	}
	c.pushBlob("m/x", []byte("some bytes"))
	c.do("GET", "/v2/m/x/blobs/"+digest.FromString("some bytes").String(), nil)
	g.Metrics().GCRun(1234, nil)
	g.Metrics().GCRun(0, fmt.Errorf("boom"))
	body := c.do("GET", "/metrics", nil).Body.String()
	for _, want := range []string{
		`imgtool_registry_http_requests_total{code="201",method="POST",route="uploads"} 1`,
		`imgtool_registry_http_requests_total{code="200",method="GET",route="blob"} 1`,
		`imgtool_registry_http_requests_total{code="200",method="GET",route="healthz"} 1`,
		`imgtool_registry_http_request_bytes_total{route="uploads"} 10`,
		`imgtool_registry_http_response_bytes_total{route="blob"} 10`,
		`imgtool_registry_uploads_completed_total 1`,
		`imgtool_registry_upload_requests_in_flight 0`,
		`imgtool_registry_gc_runs_total{result="ok"} 1`,
		`imgtool_registry_gc_runs_total{result="error"} 1`,
		`imgtool_registry_gc_freed_bytes_total 1234`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	hidden := &client{t: t, h: New(drv, Options{HideMetrics: true})}
	hidden.want(hidden.do("GET", "/metrics", nil), http.StatusNotFound, "UNSUPPORTED")
}

// stuckDriver is a storage driver whose Stat ignores its context and
// answers only when the test ends.
type stuckDriver struct {
	*inmemory.Driver
	release chan struct{}
}

func (s stuckDriver) Stat(context.Context, string) (storagedriver.FileInfo, error) {
	<-s.release
	return nil, errors.New("released")
}

func TestHealthReportsStorageFailure(t *testing.T) {
	drv := stuckDriver{inmemory.New(), make(chan struct{})}
	t.Cleanup(func() { close(drv.release) })
	c := &client{t: t, h: New(drv, Options{HealthTimeout: 50 * time.Millisecond})}
	w := c.do("GET", "/healthz", nil)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "no answer within 50ms") {
		t.Fatalf("healthz over a stuck driver: %d %q", w.Code, w.Body)
	}
}

func TestClientAddr(t *testing.T) {
	for remote, want := range map[string]string{
		"10.1.2.3:5555":              "10.1.2.3",
		"[::1]:5555":                 "::1",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::9]:443": "2001:db8:1:2::/64",
		"[::ffff:10.1.2.3]:80":       "::ffff:10.1.2.3",
		"not-an-address":             "not-an-address",
	} {
		r := &http.Request{RemoteAddr: remote}
		if got := clientAddr(r); got != want {
			t.Errorf("clientAddr(%s) = %s, want %s", remote, got, want)
		}
	}
}
