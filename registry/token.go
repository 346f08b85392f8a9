package registry

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Tokens are the distribution spec's bearer-token flow with the registry
// as its own token server: /v2/ challenges with
// `Bearer realm="<scheme>://<host>/token",service="imgtool"`, clients
// trade their Basic credentials (or nothing, under AnonymousRead) at
// /token for a short-lived JWT (HS256) listing the repositories and
// actions granted, and send it with every request. Written by hand: the
// JWT libraries bring key types and algorithms this one HMAC needs none of.
type Tokens struct {
	// Key signs and checks tokens; replicas behind one name share it.
	Key []byte
	// TTL is a token's lifetime (clients fetch a new one when it lapses).
	TTL time.Duration
	// Realm is the token endpoint's URL for the challenge; empty derives
	// it from each request (scheme and Host).
	Realm string
}

const (
	tokenService = "imgtool"
	tokenIssuer  = "imgtool registry"
)

// tokenAccess is one grant of a token, as the token spec's "access" claim.
type tokenAccess struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

type tokenClaims struct {
	Issuer    string        `json:"iss"`
	Subject   string        `json:"sub"`
	Audience  string        `json:"aud"`
	IssuedAt  int64         `json:"iat"`
	NotBefore int64         `json:"nbf"`
	Expires   int64         `json:"exp"`
	ID        string        `json:"jti"`
	Access    []tokenAccess `json:"access"`
}

var tokenHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// sign makes a token for subject ("" for anonymous) with the grants.
func (t *Tokens) sign(subject string, access []tokenAccess, now time.Time) (string, error) {
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	payload, err := json.Marshal(tokenClaims{Issuer: tokenIssuer, Subject: subject, Audience: tokenService,
		IssuedAt: now.Unix(), NotBefore: now.Add(-time.Minute).Unix(), Expires: now.Add(t.TTL).Unix(),
		ID: hex.EncodeToString(id), Access: access})
	if err != nil {
		return "", err
	}
	signed := tokenHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(t.mac(signed)), nil
}

func (t *Tokens) mac(signed string) []byte {
	m := hmac.New(sha256.New, t.Key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// verify checks a token's signature, header, audience and lifetime.
func (t *Tokens) verify(token string, now time.Time) (*tokenClaims, error) {
	if len(token) > 16<<10 {
		return nil, errors.New("token too long")
	}
	head, rest, ok := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || head != tokenHeader {
		return nil, errors.New("not a token of this registry")
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, t.mac(head+"."+payload)) {
		return nil, errors.New("bad token signature")
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, errors.New("bad token payload")
	}
	var c tokenClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, errors.New("bad token payload")
	}
	switch {
	case c.Audience != tokenService || c.Issuer != tokenIssuer:
		return nil, errors.New("token for another service")
	case now.Unix() >= c.Expires:
		return nil, errors.New("token expired")
	case now.Unix() < c.NotBefore:
		return nil, errors.New("token not yet valid")
	}
	return &c, nil
}

// allows reports whether the claims grant action on typ:name ("" typ asks
// for no grant at all: any valid token will do). A resource may be granted
// in several entries, each with some of the actions (containerd asks for
// "repository:x:pull" and "repository:x:pull,push" in one request): what
// counts is their union.
func (c *tokenClaims) allows(need tokenAccess) bool {
	if need.Type == "" {
		return true
	}
	for _, act := range need.Actions {
		if !slices.ContainsFunc(c.Access, func(a tokenAccess) bool {
			return a.Type == need.Type && a.Name == need.Name &&
				(slices.Contains(a.Actions, act) || slices.Contains(a.Actions, "*"))
		}) {
			return false
		}
	}
	return slices.ContainsFunc(c.Access, func(a tokenAccess) bool { return a.Type == need.Type && a.Name == need.Name })
}

// parseScopes reads the token request's scope parameters
// ("repository:team/app:pull,push", several per parameter when separated
// by spaces); malformed ones are skipped, as the spec lets a token server
// grant less than asked.
func parseScopes(params []string) []tokenAccess {
	var out []tokenAccess
	for _, p := range params {
		for _, s := range strings.Fields(p) {
			// A name may hold a port-less host but never a colon; the type
			// is before the first colon and the actions after the last.
			first, last := strings.Index(s, ":"), strings.LastIndex(s, ":")
			if first <= 0 || last == first {
				continue
			}
			a := tokenAccess{Type: s[:first], Name: s[first+1 : last]}
			for _, act := range strings.Split(s[last+1:], ",") {
				if act != "" && !slices.Contains(a.Actions, act) {
					a.Actions = append(a.Actions, act)
				}
			}
			if (a.Type == "repository" && validName(a.Name)) || (a.Type == "registry" && a.Name == "catalog") {
				out = append(out, a)
			}
		}
	}
	return out
}

// grant cuts what was asked to what subject may have: a user anything, an
// anonymous client (only under AnonymousRead) pulls and the catalog.
func grant(asked []tokenAccess, subject string) []tokenAccess {
	out := []tokenAccess{}
	for _, a := range asked {
		if subject == "" {
			if a.Type == "repository" && slices.Contains(a.Actions, "pull") {
				a.Actions = []string{"pull"}
			} else if a.Type != "registry" {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// LoadTokenKey reads the token signing key at path, making a random one
// (0600, atomically, under a lock of its directory) if there is none.
// Replicas behind one name need the same key file.
func LoadTokenKey(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("token key %s: %w", path, err)
	}
	unlock, err := lockDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer unlock()
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, derr := hex.DecodeString(strings.TrimSpace(string(data)))
		if derr != nil || len(key) < 32 {
			return nil, fmt.Errorf("token key %s: want at least 64 hex digits (remove it to make a new one)", path)
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("token key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	return key, nil
}
