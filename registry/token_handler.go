package registry

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxTokenForm bounds a POST /token body: a few short form fields.
const maxTokenForm = 16 << 10

// serveToken is the token endpoint, in both of the forms clients use:
//   - GET /token?service=…&scope=… with Basic credentials (or none under
//     AnonymousRead): the token spec's flow, as docker and crane use it;
//   - POST /token with a form (grant_type=password, username, password,
//     scope, service, client_id): the OAuth2 flow of the token spec's
//     oauth page, which containerd tries first whenever it holds a
//     password and which a 405 would send back to GET at the cost of a
//     second round trip on every login.
//
// Both trade the credentials for the same short-lived token. No refresh
// tokens are issued (grant_type=refresh_token is refused), so a client's
// standing credential stays the password an operator can change in the
// htpasswd file. Failed logins here count against the address like
// anywhere else.
func (g *Registry) serveToken(w http.ResponseWriter, r *http.Request) {
	var (
		user, password string
		hasCreds       bool
		scopes         []string
	)
	switch r.Method {
	case http.MethodGet:
		user, password, hasCreds = r.BasicAuth()
		scopes = r.URL.Query()["scope"]
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxTokenForm)
		if err := r.ParseForm(); err != nil {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed form: "+err.Error())
			return
		}
		switch gt := r.PostForm.Get("grant_type"); gt {
		case "password":
			user, password = r.PostForm.Get("username"), r.PostForm.Get("password")
			hasCreds = true
		default:
			writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type",
				"grant_type "+quoteShort(gt)+" is not supported; use password")
			return
		}
		scopes = r.PostForm["scope"]
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, r, newError(errUnsupported, "the token endpoint takes GET or POST"))
		return
	}
	subject, ok := g.tokenSubject(w, r, user, password, hasCreds)
	if !ok {
		return
	}
	g.issueToken(w, r, subject, parseScopes(scopes))
}

// tokenSubject checks the credentials of a token request and tells whom
// the token is for ("" for anonymous); when it returns false it has
// answered the request.
func (g *Registry) tokenSubject(w http.ResponseWriter, r *http.Request, user, password string, hasCreds bool) (string, bool) {
	client := clientAddr(r)
	switch {
	case hasCreds:
		if blocked, retry := g.limiter.blocked(client); blocked {
			g.answer(w, r, throttle, tokenAccess{}, client, retry)
			return "", false
		}
		if !g.verify(r, client, user, password) {
			g.answer(w, r, challenge, tokenAccess{}, client, 0)
			return "", false
		}
		return user, true
	case !g.opts.Access.AnonymousRead:
		g.answer(w, r, challenge, tokenAccess{}, client, 0)
		return "", false
	}
	return "", true
}

// issueToken answers with a token granting subject what it may have of
// asked, in the fields both flows' clients read.
func (g *Registry) issueToken(w http.ResponseWriter, r *http.Request, subject string, asked []tokenAccess) {
	a := &g.opts.Access
	now := time.Now()
	granted := grant(asked, subject)
	token, err := a.Tokens.sign(subject, granted, now)
	if err != nil {
		writeError(w, r, err)
		return
	}
	scope := make([]string, 0, len(granted))
	for _, s := range granted {
		scope = append(scope, s.Type+":"+s.Name+":"+strings.Join(s.Actions, ","))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token": token, "access_token": token, "scope": strings.Join(scope, " "),
		"expires_in": int(a.Tokens.TTL.Seconds()), "issued_at": now.UTC().Format(time.RFC3339),
	})
}

// writeOAuthError is an OAuth2 error response (RFC 6749 section 5.2), the
// shape a POST /token client parses.
func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

// quoteShort quotes a client-chosen value for an error message, cut to a
// length that cannot flood a log.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
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
