package registry

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
)

func TestTokenSignVerify(t *testing.T) {
	now := time.Now()
	tk := &Tokens{Key: []byte("0123456789abcdef0123456789abcdef"), TTL: time.Minute}
	pushApp := []tokenAccess{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}}
	tok, err := tk.sign("alice", pushApp, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tk.verify(tok, now)
	if err != nil || c.Subject != "alice" {
		t.Fatalf("verify: %+v %v", c, err)
	}
	for _, tc := range []struct {
		need tokenAccess
		want bool
	}{
		{tokenAccess{}, true},
		{tokenAccess{"repository", "team/app", []string{"pull"}}, true},
		{tokenAccess{"repository", "team/app", []string{"push"}}, true},
		{tokenAccess{"repository", "team/app", []string{"delete"}}, false},
		{tokenAccess{"repository", "team/other", []string{"pull"}}, false},
		{tokenAccess{"registry", "catalog", []string{"*"}}, false},
	} {
		if got := c.allows(tc.need); got != tc.want {
			t.Errorf("allows(%+v) = %v, want %v", tc.need, got, tc.want)
		}
	}
	// One repository granted in two entries, as containerd's scopes ask
	// for it: the actions add up.
	split := &tokenClaims{Access: parseScopes([]string{"repository:x:pull", "repository:x:pull,push", "repository:y:pull"})}
	for _, tc := range []struct {
		need tokenAccess
		want bool
	}{
		{tokenAccess{"repository", "x", []string{"push"}}, true},
		{tokenAccess{"repository", "x", []string{"pull", "push"}}, true},
		{tokenAccess{"repository", "x", []string{"delete"}}, false},
		{tokenAccess{"repository", "y", []string{"pull", "push"}}, false},
		{tokenAccess{"repository", "z", nil}, false},
	} {
		if got := split.allows(tc.need); got != tc.want {
			t.Errorf("split grants: allows(%+v) = %v, want %v", tc.need, got, tc.want)
		}
	}
	star := &tokenClaims{Access: []tokenAccess{{Type: "repository", Name: "x", Actions: []string{"*"}}}}
	if !star.allows(tokenAccess{"repository", "x", []string{"delete"}}) {
		t.Error(`"*" does not grant delete`)
	}

	parts := strings.Split(tok, ".")
	forged := func(mutate func(*tokenClaims)) string {
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var cl tokenClaims
		json.Unmarshal(raw, &cl)
		mutate(&cl)
		b, _ := json.Marshal(cl)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
	}
	other := &Tokens{Key: []byte("another key, another registry..."), TTL: time.Minute}
	otherTok, _ := other.sign("alice", pushApp, now)
	for name, bad := range map[string]struct {
		tok string
		at  time.Time
	}{
		"expired":             {tok, now.Add(time.Minute)},
		"not yet valid":       {tok, now.Add(-2 * time.Minute)},
		"widened grant":       {forged(func(c *tokenClaims) { c.Access[0].Name = "team/other" }), now},
		"extended expiry":     {forged(func(c *tokenClaims) { c.Expires += 3600 }), now},
		"signed elsewhere":    {otherTok, now},
		"alg none":            {base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".", now},
		"garbage":             {"a.b.c", now},
		"no dots":             {"abc", now},
		"empty":               {"", now},
		"huge":                {strings.Repeat("a", 20000), now},
		"signature truncated": {tok[:len(tok)-4], now},
	} {
		if _, err := tk.verify(bad.tok, bad.at); err == nil {
			t.Errorf("%s: token accepted", name)
		}
	}
}

func TestParseScopesAndGrant(t *testing.T) {
	got := parseScopes([]string{
		"repository:team/app:pull,push",
		"repository:a:pull repository:b:push,pull,pull",
		"registry:catalog:*",
		"repository:BAD:pull", "repository:x", "nonsense", "repository:localhost:5000/x:pull", ":x:pull",
	})
	want := []tokenAccess{
		{"repository", "team/app", []string{"pull", "push"}},
		{"repository", "a", []string{"pull"}},
		{"repository", "b", []string{"push", "pull"}},
		{"registry", "catalog", []string{"*"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseScopes = %+v\nwant %+v", got, want)
	}
	if g := grant(want, "alice"); !reflect.DeepEqual(g, want) {
		t.Errorf("a user was granted %+v", g)
	}
	anon := []tokenAccess{
		{"repository", "team/app", []string{"pull"}},
		{"repository", "a", []string{"pull"}},
		{"repository", "b", []string{"pull"}},
		{"registry", "catalog", []string{"*"}},
	}
	if g := grant(want, ""); !reflect.DeepEqual(g, anon) {
		t.Errorf("anonymous was granted %+v, want %+v", g, anon)
	}
}

// TestTokenFlow walks the flow a client follows, in process: challenge,
// token, request with the token, a push the token does not cover.
func TestTokenFlow(t *testing.T) {
	tk := &Tokens{Key: []byte("0123456789abcdef0123456789abcdef"), TTL: time.Minute}
	c := newClient(t, inmemory.New(), Options{Access: Access{Auth: &fakeAuth{}, AnonymousRead: true, Tokens: tk}})
	w := c.do("GET", "/v2/", nil)
	c.want(w, http.StatusUnauthorized, "UNAUTHORIZED")
	if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="http://example.com/token",service="imgtool"` {
		t.Errorf("challenge %q", got)
	}
	token := func(creds string, scope string) string {
		t.Helper()
		var hdr []string
		if creds != "" {
			hdr = []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(creds))}
		}
		w := c.do("GET", "/token?service=imgtool&scope="+scope, nil, hdr...)
		c.want(w, http.StatusOK, "")
		var body struct {
			Token     string `json:"token"`
			ExpiresIn int    `json:"expires_in"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Token == "" || body.ExpiresIn != 60 {
			t.Fatalf("token response %s", w.Body)
		}
		return "Bearer " + body.Token
	}
	user := token("alice:right", "repository:team/app:pull,push")
	c.want(c.do("GET", "/v2/", nil, "Authorization", user), http.StatusOK, "")
	c.want(c.do("POST", "/v2/team/app/blobs/uploads/", nil, "Authorization", user), http.StatusAccepted, "")
	c.want(c.do("POST", "/v2/team/app/blobs/uploads/?digest="+digest.FromString("x").String(), []byte("x"), "Authorization", user), http.StatusCreated, "")
	w = c.do("POST", "/v2/team/other/blobs/uploads/", nil, "Authorization", user)
	c.want(w, http.StatusUnauthorized, "UNAUTHORIZED")
	if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, `scope="repository:team/other:push",error="insufficient_scope"`) {
		t.Errorf("insufficient scope challenge %q", got)
	}
	anon := token("", "repository:team/app:pull,push")
	c.want(c.do("GET", "/v2/team/app/tags/list", nil, "Authorization", anon), http.StatusOK, "")
	c.want(c.do("POST", "/v2/team/app/blobs/uploads/", nil, "Authorization", anon), http.StatusUnauthorized, "UNAUTHORIZED")
	c.want(c.do("GET", "/token?scope=repository:team/app:push", nil, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:wrong"))),
		http.StatusUnauthorized, "UNAUTHORIZED")
	c.want(c.do("GET", "/v2/", nil, "Authorization", "Bearer forged.token.here"), http.StatusUnauthorized, "UNAUTHORIZED")
	c.want(c.do("PUT", "/token", nil), http.StatusMethodNotAllowed, "UNSUPPORTED")

	closed := newClient(t, inmemory.New(), Options{Access: Access{Auth: &fakeAuth{}, Tokens: tk}})
	w = closed.do("GET", "/token?scope=repository:team/app:pull", nil)
	closed.want(w, http.StatusUnauthorized, "UNAUTHORIZED")
	if got := w.Header().Get("WWW-Authenticate"); got != `Basic realm="imgtool"` {
		t.Errorf("token endpoint challenge %q", got)
	}
	plain := newClient(t, inmemory.New(), Options{})
	plain.want(plain.do("GET", "/token", nil), http.StatusNotFound, "UNSUPPORTED")
}

// TestTokenPOST is the OAuth2 form of the token endpoint, which
// containerd tries first when it holds a password.
func TestTokenPOST(t *testing.T) {
	tk := &Tokens{Key: []byte("0123456789abcdef0123456789abcdef"), TTL: time.Minute}
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, body  string
		status      int
		oauthErr    string
		wantScope   string
		pushAllowed bool
	}{
		{"password grant", "grant_type=password&username=alice&password=right&service=imgtool&client_id=containerd-client&scope=repository%3Ateam%2Fapp%3Apull%2Cpush",
			http.StatusOK, "", "repository:team/app:pull,push", true},
		{"two scopes in one field", "grant_type=password&username=alice&password=right&scope=repository%3Ateam%2Fapp%3Apull+repository%3Ateam%2Flib%3Apull",
			http.StatusOK, "", "repository:team/app:pull repository:team/lib:pull", false},
		{"wrong password", "grant_type=password&username=alice&password=wrong&scope=repository%3Ateam%2Fapp%3Apull", http.StatusUnauthorized, "", "", false},
		{"no password", "grant_type=password&username=alice", http.StatusUnauthorized, "", "", false},
		{"refresh token", "grant_type=refresh_token&refresh_token=abc", http.StatusBadRequest, "unsupported_grant_type", "", false},
		{"no grant type", "username=alice&password=right", http.StatusBadRequest, "unsupported_grant_type", "", false},
		{"bad form", "grant_type=%zz", http.StatusBadRequest, "invalid_request", "", false},
		{"oversized form", "grant_type=password&x=" + strings.Repeat("a", maxTokenForm), http.StatusBadRequest, "invalid_request", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, inmemory.New(), Options{Access: Access{Auth: &fakeAuth{}, Tokens: tk}})
			w := c.do("POST", "/token", []byte(tc.body), "Content-Type", form)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			var body struct {
				AccessToken string `json:"access_token"`
				Scope       string `json:"scope"`
				ExpiresIn   int    `json:"expires_in"`
				Error       string `json:"error"`
			}
			if tc.status != http.StatusUnauthorized {
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
					t.Fatalf("body %s: %v", w.Body, err)
				}
			}
			if body.Error != tc.oauthErr {
				t.Errorf("error %q, want %q", body.Error, tc.oauthErr)
			}
			if tc.status != http.StatusOK {
				if body.AccessToken != "" {
					t.Errorf("a failed request got a token")
				}
				return
			}
			if body.Scope != tc.wantScope || body.ExpiresIn != 60 {
				t.Errorf("scope %q expires_in %d, want %q 60", body.Scope, body.ExpiresIn, tc.wantScope)
			}
			push := c.do("POST", "/v2/team/app/blobs/uploads/", nil, "Authorization", "Bearer "+body.AccessToken)
			if (push.Code == http.StatusAccepted) != tc.pushAllowed {
				t.Errorf("push with the token: %d, allowed %v", push.Code, tc.pushAllowed)
			}
		})
	}
}

func TestLoadTokenKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "token.key")
	k1, err := LoadTokenKey(path)
	if err != nil || len(k1) != 32 {
		t.Fatalf("new key: %d bytes, %v", len(k1), err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	k2, err := LoadTokenKey(path)
	if err != nil || string(k1) != string(k2) {
		t.Fatal("the key changed between loads")
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokenKey(path); err == nil {
		t.Error("a short key was accepted")
	}
}

func TestAccessDecideBearer(t *testing.T) {
	tk := &Tokens{Key: []byte("k"), TTL: time.Minute}
	for _, tc := range []struct {
		name           string
		access         Access
		write          bool
		valid, granted bool
		want           verdict
	}{
		{"granted", Access{Auth: &fakeAuth{}, Tokens: tk}, true, true, true, allow},
		{"valid but not for this", Access{Auth: &fakeAuth{}, Tokens: tk}, true, true, false, insufficient},
		{"invalid", Access{Auth: &fakeAuth{}, Tokens: tk}, false, false, false, challenge},
		{"invalid under anonymous read", Access{Auth: &fakeAuth{}, Tokens: tk, AnonymousRead: true}, false, false, false, challenge},
		{"read-only first", Access{Auth: &fakeAuth{}, Tokens: tk, ReadOnly: true}, true, true, true, refuse},
	} {
		q := gateRequest{kind: "manifest", write: tc.write, bearer: true,
			checkToken: func() (bool, bool) { return tc.valid, tc.granted }}
		if got := tc.access.decide(q); got != tc.want {
			t.Errorf("%s: decide = %d, want %d", tc.name, got, tc.want)
		}
	}
}
