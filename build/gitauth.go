package build

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Git over HTTPS with build secrets, as BuildKit does it (source/git's
// getAuthToken): for a remote on host H, the first of the secrets
//
//	GIT_AUTH_HEADER.H  GIT_AUTH_TOKEN.H  GIT_AUTH_HEADER  GIT_AUTH_TOKEN
//
// that the build has becomes the Authorization header git sends: a
// header secret as it is ("bearer TOKEN", "basic BASE64"), a token as
// "basic base64(x-access-token:TOKEN)" (GitHub's form; GitLab and Gitea
// take any user name). H is the URL's host with its port; when the port
// gives no secret, the host without it is tried too.
//
// Two extensions for what docker's documentation told users for a long
// time (docker/docs#19739, corrected by #23460): a header secret of one
// word is a scheme for the token ("bearer", or "basic", where a token
// USER:PASSWORD is sent as such); and values are trimmed, so that a
// token file ending in a newline works.
//
// The header goes only to https URLs of H: scoped to https://H/ in git's
// configuration, given through GIT_CONFIG_COUNT (never argv, which other
// users can read in /proc), and with redirects not followed there, since
// git would send it to wherever the first request was redirected.

const (
	gitAuthHeaderSecret = "GIT_AUTH_HEADER"
	gitAuthTokenSecret  = "GIT_AUTH_TOKEN"
	// maxGitAuthSecret bounds what is read of a secret file.
	maxGitAuthSecret = 16 << 10
)

// gitAuth is the Authorization header one git remote gets.
type gitAuth struct {
	scope  string   // https://H/, what git's http.<url>.* settings match
	header string   // the header's value, after "Authorization: "
	secret string   // the secret it came from, for messages
	hide   []string // what messages must never show
}

// config is the git configuration that sends the header: an empty
// extraheader first drops any the user's configuration has for the
// host, so that the server sees one Authorization.
func (a *gitAuth) config() [][2]string {
	if a == nil {
		return nil
	}
	return [][2]string{
		{"http." + a.scope + ".extraheader", ""},
		{"http." + a.scope + ".extraheader", "Authorization: " + a.header},
		{"http." + a.scope + ".followRedirects", "false"},
	}
}

// secretLookup reads a secret by id: ok is false when the build has no
// such secret.
type secretLookup func(id string) (value string, ok bool, err error)

// gitAuthFor chooses the header for remote from the secrets lookup
// finds; nil when none applies. insecure names the secret that would
// apply if remote were not plain http, so that callers can warn.
func gitAuthFor(remote string, lookup secretLookup) (auth *gitAuth, insecure string, err error) {
	u, err := url.Parse(remote)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, "", nil // ssh, git://, file://: no HTTP header
	}
	host := strings.ToLower(u.Host)
	var found []string // ids, in order, with their values
	values := map[string]string{}
	for _, id := range gitAuthSecretIDs(host, strings.ToLower(u.Hostname())) {
		v, ok, err := lookup(id)
		if err != nil {
			return nil, "", err
		}
		if !ok {
			continue
		}
		if u.Scheme == "http" {
			return nil, id, nil
		}
		found, values[id] = append(found, id), strings.TrimSpace(v)
	}
	scheme, schemeID := "", ""
	for _, id := range found {
		if v := values[id]; isHeaderSecret(id) && v != "" && !strings.ContainsAny(v, " \t") {
			scheme, schemeID = v, id
			break
		}
	}
	scope := "https://" + u.Host + "/"
	for _, id := range found {
		v := values[id]
		if isHeaderSecret(id) && id == schemeID {
			continue
		}
		if err := checkHeaderValue(id, v); err != nil {
			return nil, "", err
		}
		if isHeaderSecret(id) {
			if !strings.ContainsAny(v, " \t") {
				continue // a scheme, less specific than the one taken
			}
			return &gitAuth{scope: scope, header: v, secret: id, hide: hideHeader(v)}, "", nil
		}
		if err := checkHeaderValue(schemeID, scheme); schemeID != "" && err != nil {
			return nil, "", err
		}
		h := tokenHeader(scheme, v)
		return &gitAuth{scope: scope, header: h, secret: id, hide: append(hideHeader(h), v, scheme)}, "", nil
	}
	if scheme != "" {
		return nil, "", fmt.Errorf("secret %s is one word, a scheme, but no %s secret gives %s the token", schemeID, gitAuthTokenSecret, host)
	}
	return nil, "", nil
}

func isHeaderSecret(id string) bool { return strings.HasPrefix(id, gitAuthHeaderSecret) }

// gitAuthSecretIDs lists the secrets that may authenticate to host, in
// BuildKit's order, then host without its port.
func gitAuthSecretIDs(host, hostname string) []string {
	ids := []string{gitAuthHeaderSecret + "." + host, gitAuthTokenSecret + "." + host}
	if hostname != host {
		ids = append(ids, gitAuthHeaderSecret+"."+hostname, gitAuthTokenSecret+"."+hostname)
	}
	return append(ids, gitAuthHeaderSecret, gitAuthTokenSecret)
}

// tokenHeader is the header a token is sent in, with scheme ("" is
// BuildKit's basic x-access-token).
func tokenHeader(scheme, token string) string {
	switch {
	case scheme == "" || strings.EqualFold(scheme, "basic") && !strings.Contains(token, ":"):
		return cmp.Or(scheme, "basic") + " " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
	case strings.EqualFold(scheme, "basic"):
		return scheme + " " + base64.StdEncoding.EncodeToString([]byte(token))
	default:
		return scheme + " " + token
	}
}

// hideHeader is what to redact of a header: all of it, and its
// credentials alone (git may print either).
func hideHeader(h string) []string {
	out := []string{h}
	if _, cred, ok := strings.Cut(h, " "); ok {
		out = append(out, strings.TrimSpace(cred))
	}
	return out
}

// checkHeaderValue refuses what cannot go in one HTTP header line; the
// message never shows the value.
func checkHeaderValue(id, v string) error {
	if v == "" {
		return fmt.Errorf("secret %s is empty", id)
	}
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("secret %s holds a control character (a line break?): it must be one header value", id)
		}
	}
	return nil
}

// fileSecrets looks secrets up in the files of Request.Secrets.
func fileSecrets(files map[string]string) secretLookup {
	return func(id string) (string, bool, error) {
		p, ok := files[id]
		if !ok {
			return "", false, nil
		}
		f, err := os.Open(p)
		if err != nil {
			return "", false, fmt.Errorf("secret %s: %w", id, err)
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxGitAuthSecret+1))
		if err != nil {
			return "", false, fmt.Errorf("secret %s: %w", id, err)
		}
		if len(data) > maxGitAuthSecret {
			return "", false, fmt.Errorf("secret %s: more than %d bytes", id, maxGitAuthSecret)
		}
		return string(data), true, nil
	}
}

// WithSecrets makes g authenticate with the GIT_AUTH_TOKEN or
// GIT_AUTH_HEADER secret (described above) that applies to its remote,
// if any; secrets maps ids to files, as Request.Secrets does. warn hears
// of a secret left unused because the remote is plain http.
func (g GitSource) WithSecrets(secrets map[string]string, warn func(string)) (GitSource, error) {
	auth, insecure, err := gitAuthFor(g.Remote, fileSecrets(secrets))
	if err != nil {
		return g, fmt.Errorf("git source %s: %w", redact(g.Remote), err)
	}
	if insecure != "" && warn != nil {
		warn(fmt.Sprintf("secret %s is not sent to %s: git credentials go over https only", insecure, redact(g.Remote)))
	}
	g.auth = auth
	return g, nil
}

// withGitConfig adds settings to env through GIT_CONFIG_COUNT, after
// those env already gives that way.
func withGitConfig(env []string, settings [][2]string) []string {
	if len(settings) == 0 {
		return env
	}
	n := 0
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GIT_CONFIG_COUNT="); ok {
			n, _ = strconv.Atoi(v) // the last one counts, as in exec
		}
	}
	n = max(n, 0)
	for i, s := range settings {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", n+i, s[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", n+i, s[1]))
	}
	return append(env, "GIT_CONFIG_COUNT="+strconv.Itoa(n+len(settings)))
}

// explain adds to a failed git command what the credentials have to do
// with it: refused, or a redirect not followed, or none given.
func (a *gitAuth) explain(remote string, err error) error {
	msg := err.Error()
	refused := strings.Contains(msg, "could not read Username") || strings.Contains(msg, "Authentication failed") ||
		strings.Contains(msg, "returned error: 401") || strings.Contains(msg, "returned error: 403")
	switch {
	case a != nil && refused:
		return fmt.Errorf("%w (the server refused the credentials of secret %s)", err, a.secret)
	case a != nil && strings.Contains(msg, "returned error: 30"):
		return fmt.Errorf("%w (the server redirects; with secret %s git follows no redirect, so that the token goes to no other server: use the repository's new URL)", err, a.secret)
	case a == nil && refused && strings.HasPrefix(remote, "https://"):
		return fmt.Errorf("%w (the repository needs credentials: give a token with --secret id=%s,env=VARIABLE)", err, gitAuthTokenSecret)
	}
	return err
}
