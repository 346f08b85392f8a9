package registry

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// serveToken is the token endpoint (GET /token?service=…&scope=…): Basic
// credentials, or none under AnonymousRead, in; a token granting what the
// caller may have of what it asked for, out. Failed logins here count
// against the address like anywhere else.
func (g *Registry) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, r, newError(errUnsupported, "the token endpoint takes GET"))
		return
	}
	a := &g.opts.Access
	user, password, hasCreds := r.BasicAuth()
	client := clientAddr(r)
	subject := ""
	switch {
	case hasCreds:
		if blocked, retry := g.limiter.blocked(client); blocked {
			g.answer(w, r, throttle, tokenAccess{}, client, retry)
			return
		}
		if !g.verify(r, client, user, password) {
			g.answer(w, r, challenge, tokenAccess{}, client, 0)
			return
		}
		subject = user
	case !a.AnonymousRead:
		g.answer(w, r, challenge, tokenAccess{}, client, 0)
		return
	}
	now := time.Now()
	token, err := a.Tokens.sign(subject, grant(parseScopes(r.URL.Query()["scope"]), subject), now)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token": token, "access_token": token,
		"expires_in": int(a.Tokens.TTL.Seconds()), "issued_at": now.UTC().Format(time.RFC3339),
	})
}

// realm is the token endpoint's URL as clients reach this registry:
// Tokens.Realm when set (behind a proxy), else from the request's scheme
// and Host, kept to host-name characters since the client chose it.
func (t *Tokens) realm(r *http.Request) string {
	if t.Realm != "" {
		return t.Realm
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if host == "" || strings.IndexFunc(host, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]", c))
	}) >= 0 {
		host = "localhost"
	}
	return scheme + "://" + host + "/token"
}
