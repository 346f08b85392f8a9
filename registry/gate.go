package registry

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Access is who may do what: the part of Options that the gate in front
// of the API enforces before any handler runs.
type Access struct {
	// Auth, when set, requires credentials (HTTP Basic) for every request
	// but /healthz; nil serves everybody.
	Auth Authenticator
	// AnonymousRead lets requests without credentials GET and HEAD
	// repositories (pulls, tags, referrers, catalog); writes still need
	// credentials. /v2/ keeps answering 401 to them, since that answer is
	// how clients learn the registry takes logins.
	AnonymousRead bool
	// ReadOnly refuses every write (push, delete, upload) with 405
	// UNSUPPORTED, as distribution does in its read-only maintenance mode.
	ReadOnly bool
	// Limit bounds failed logins per client address.
	Limit LoginLimit
	// Tokens, when set (with Auth), adds the bearer-token flow: clients
	// are challenged with Bearer and trade credentials for tokens at
	// /token. Basic credentials keep working on every request.
	Tokens *Tokens
}

// Spec error codes the gate answers with (distribution-spec v1.1).
var (
	errUnauthorized    = errorCode{"UNAUTHORIZED", http.StatusUnauthorized}
	errTooManyRequests = errorCode{"TOOMANYREQUESTS", http.StatusTooManyRequests}
)

// verdict is the gate's decision on one request.
type verdict int

const (
	allow        verdict = iota
	challenge            // 401: no or wrong credentials
	throttle             // 429: too many failed logins from this address
	refuse               // 405: a write to a read-only registry
	insufficient         // 401: a valid token that does not grant this request
)

// gateRequest is what the decision depends on, with the two expensive
// facts (the limiter's state, the password check) asked for only when the
// decision needs them.
type gateRequest struct {
	kind     string // routeKind
	write    bool   // any method but GET and HEAD
	hasCreds bool
	limited  func() bool
	verify   func() bool
	// bearer is a token sent under Access.Tokens; checkToken tells
	// whether it is valid and whether it grants the request.
	bearer     bool
	checkToken func() (valid, granted bool)
}

// decide is the gate's policy. Read-only refusals come first: they cost
// nothing and tell the client the truth whoever it is. A blocked address
// is refused before its password is checked, so a brute force learns
// nothing while it waits.
func (a *Access) decide(q gateRequest) verdict {
	if q.kind == "healthz" || q.kind == "token" { // /token checks its callers itself
		return allow
	}
	if a.ReadOnly && q.write && q.kind != "other" {
		return refuse
	}
	if a.Auth == nil {
		return allow
	}
	if q.bearer {
		switch valid, granted := q.checkToken(); {
		case granted:
			return allow
		case valid:
			return insufficient
		}
		return challenge
	}
	if q.hasCreds {
		if q.limited() {
			return throttle
		}
		if q.verify() {
			return allow
		}
		return challenge
	}
	if a.AnonymousRead && !q.write && q.kind != "base" {
		return allow
	}
	return challenge
}

// gate applies Options.Access to r; it answers the request itself and
// returns false when the request may not go on.
func (g *Registry) gate(w http.ResponseWriter, r *http.Request, kind string) bool {
	a := &g.opts.Access
	user, password, hasCreds := r.BasicAuth()
	client := clientAddr(r)
	var retry time.Duration
	token, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	need := neededAccess(r, kind)
	v := a.decide(gateRequest{
		bearer: bearer && a.Tokens != nil,
		checkToken: func() (bool, bool) {
			c, err := a.Tokens.verify(token, time.Now())
			return err == nil, err == nil && c.allows(need)
		},
		kind:     kind,
		write:    r.Method != http.MethodGet && r.Method != http.MethodHead,
		hasCreds: hasCreds,
		limited: func() bool {
			var blocked bool
			blocked, retry = g.limiter.blocked(client)
			return blocked
		},
		verify: func() bool { return g.verify(r, client, user, password) },
	})
	g.answer(w, r, v, need, client, retry)
	return v == allow
}

// answer writes the gate's refusals.
func (g *Registry) answer(w http.ResponseWriter, r *http.Request, v verdict, need tokenAccess, client string, retry time.Duration) {
	if v != allow {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	}
	switch v {
	case refuse:
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, r, newError(errUnsupported, "the registry is read-only: %s refused", r.Method))
	case challenge, insufficient:
		w.Header().Set("WWW-Authenticate", g.challenge(r, need, v == insufficient))
		writeError(w, r, newError(errUnauthorized, "authentication required"))
	case throttle:
		g.metrics.throttled.Inc()
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
		writeError(w, r, newError(errTooManyRequests, "too many failed logins from %s; retry later", client))
	}
}

// challenge is the WWW-Authenticate value: Basic, or Bearer naming the
// token endpoint and the scope this request needs.
func (g *Registry) challenge(r *http.Request, need tokenAccess, insufficient bool) string {
	t := g.opts.Access.Tokens
	if t == nil || r.URL.Path == "/token" {
		return `Basic realm="imgtool"`
	}
	c := fmt.Sprintf(`Bearer realm=%q,service=%q`, t.realm(r), tokenService)
	if need.Type != "" {
		c += fmt.Sprintf(`,scope="%s:%s:%s"`, need.Type, need.Name, strings.Join(need.Actions, ","))
	}
	if insufficient {
		c += `,error="insufficient_scope"`
	}
	return c
}

// neededAccess is the token grant a request needs: an action on its
// repository, the catalog, or nothing beyond a valid token.
func neededAccess(r *http.Request, kind string) tokenAccess {
	switch kind {
	case "catalog":
		return tokenAccess{Type: "registry", Name: "catalog", Actions: []string{"*"}}
	case "manifest", "blob", "upload", "uploads", "tags", "referrers":
		rt, _ := parseRoute(strings.TrimPrefix(r.URL.Path, "/v2/"))
		action := "pull"
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodDelete:
			action = "delete"
		default:
			action = "push"
		}
		return tokenAccess{Type: "repository", Name: rt.name, Actions: []string{action}}
	}
	return tokenAccess{}
}

// verify checks a login, counting and logging a failure (the user name
// and address, never the password).
func (g *Registry) verify(r *http.Request, client, user, password string) bool {
	ok, err := g.opts.Access.Auth.Authenticate(r.Context(), user, password)
	if err != nil {
		g.securityLog().ErrorContext(r.Context(), "login check failed", slog.String("user", logName(user)),
			slog.String("remote", client), slog.Any("err", err))
		return false
	}
	if ok {
		return true
	}
	g.metrics.loginFailures.Inc()
	g.limiter.fail(client)
	g.securityLog().WarnContext(r.Context(), "login failed", slog.String("user", logName(user)),
		slog.String("remote", client), slog.String("method", r.Method), slog.String("path", r.URL.Path))
	return false
}

// securityLog is where login failures go: the access log when there is
// one, or the process's default logger, so they are never dropped.
func (g *Registry) securityLog() *slog.Logger {
	if g.opts.Logger != nil {
		return g.opts.Logger
	}
	return slog.Default()
}

// clientAddr is the request's peer IP, by which failed logins are
// counted; headers such as X-Forwarded-For are not trusted, since any
// client can send them. An IPv6 peer counts as its /64, the block one
// host usually gets, so that it cannot rotate addresses to escape.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() != nil || ip.IsLoopback() {
		return host
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

// logName bounds what a client-chosen user name puts in the log.
func logName(user string) string {
	if len(user) > 128 {
		return user[:128] + "…"
	}
	return user
}

// routeKind names what path addresses, for the gate and for metric labels
// (never the repository, which would make label sets unbounded).
func routeKind(p string) string {
	switch p {
	case "/v2", "/v2/":
		return "base"
	case "/v2/_catalog":
		return "catalog"
	case "/healthz":
		return "healthz"
	case "/metrics":
		return "metrics"
	case "/token":
		return "token"
	}
	if rest, ok := strings.CutPrefix(p, "/v2/"); ok {
		if rt, ok := parseRoute(rest); ok {
			return rt.kind
		}
	}
	return "other"
}
