package build

import (
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
)

func basicToken(s string) string {
	return "basic " + base64.StdEncoding.EncodeToString([]byte(s))
}

// TestGitAuthFor: which secret authenticates to which remote, and the
// header it makes.
func TestGitAuthFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		remote  string
		secrets map[string]string
		header  string // "" : none
		secret  string // the secret used
		scope   string
		warn    string // the secret left unused over plain http
		bad     string
	}{
		{name: "token", remote: "https://git.example.com/org/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN": "tok"},
			header: basicToken("x-access-token:tok"), secret: "GIT_AUTH_TOKEN", scope: "https://git.example.com/"},
		{name: "a token file's newline", remote: "https://git.example.com/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN": "tok\n"},
			header: basicToken("x-access-token:tok"), secret: "GIT_AUTH_TOKEN", scope: "https://git.example.com/"},
		{name: "host token first", remote: "https://git.example.com/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN": "all", "GIT_AUTH_TOKEN.git.example.com": "mine", "GIT_AUTH_TOKEN.other.example.com": "theirs"},
			header:  basicToken("x-access-token:mine"), secret: "GIT_AUTH_TOKEN.git.example.com", scope: "https://git.example.com/"},
		{name: "another host's token only", remote: "https://git.example.com/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN.other.example.com": "theirs"}},
		{name: "host with port first", remote: "https://127.0.0.1:8443/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN.127.0.0.1": "host", "GIT_AUTH_TOKEN.127.0.0.1:8443": "port"},
			header:  basicToken("x-access-token:port"), secret: "GIT_AUTH_TOKEN.127.0.0.1:8443", scope: "https://127.0.0.1:8443/"},
		{name: "host without port", remote: "https://127.0.0.1:8443/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN": "all", "GIT_AUTH_TOKEN.127.0.0.1": "host"},
			header:  basicToken("x-access-token:host"), secret: "GIT_AUTH_TOKEN.127.0.0.1", scope: "https://127.0.0.1:8443/"},
		{name: "host in capitals", remote: "https://Git.Example.com/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN.git.example.com": "tok"},
			header: basicToken("x-access-token:tok"), secret: "GIT_AUTH_TOKEN.git.example.com", scope: "https://Git.Example.com/"},
		{name: "user in the URL", remote: "https://ci@git.example.com/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN": "tok"},
			header: basicToken("x-access-token:tok"), secret: "GIT_AUTH_TOKEN", scope: "https://git.example.com/"},
		{name: "a whole header wins over a token", remote: "https://git.example.com/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN": "tok", "GIT_AUTH_HEADER": "bearer abc"},
			header:  "bearer abc", secret: "GIT_AUTH_HEADER", scope: "https://git.example.com/"},
		{name: "a host token wins over a header for all", remote: "https://git.example.com/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN.git.example.com": "tok", "GIT_AUTH_HEADER": "bearer abc"},
			header:  basicToken("x-access-token:tok"), secret: "GIT_AUTH_TOKEN.git.example.com", scope: "https://git.example.com/"},
		{name: "a host header", remote: "https://git.example.com/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN": "tok", "GIT_AUTH_HEADER.git.example.com": "basic dXNlcjpwdw=="},
			header:  "basic dXNlcjpwdw==", secret: "GIT_AUTH_HEADER.git.example.com", scope: "https://git.example.com/"},
		{name: "scheme bearer", remote: "https://git.example.com/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN": "tok", "GIT_AUTH_HEADER": "bearer"},
			header:  "bearer tok", secret: "GIT_AUTH_TOKEN", scope: "https://git.example.com/"},
		{name: "a host's scheme for a token for all", remote: "https://git.example.com/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN": "tok", "GIT_AUTH_HEADER.git.example.com": "Bearer", "GIT_AUTH_HEADER": "token"},
			header:  "Bearer tok", secret: "GIT_AUTH_TOKEN", scope: "https://git.example.com/"},
		{name: "scheme basic with a user", remote: "https://gitlab.example.com/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN.gitlab.example.com": "gitlab-ci-token:job", "GIT_AUTH_HEADER.gitlab.example.com": "basic"},
			header:  basicToken("gitlab-ci-token:job"), secret: "GIT_AUTH_TOKEN.gitlab.example.com", scope: "https://gitlab.example.com/"},
		{name: "scheme basic without a user", remote: "https://git.example.com/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN": "tok", "GIT_AUTH_HEADER": "Basic"},
			header:  "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:tok")), secret: "GIT_AUTH_TOKEN", scope: "https://git.example.com/"},
		{name: "a token with a colon, no scheme", remote: "https://git.example.com/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN": "a:b"},
			header: basicToken("x-access-token:a:b"), secret: "GIT_AUTH_TOKEN", scope: "https://git.example.com/"},
		{name: "scheme without token", remote: "https://git.example.com/app.git", secrets: map[string]string{"GIT_AUTH_HEADER": "bearer"},
			bad: "GIT_AUTH_HEADER is one word, a scheme, but no GIT_AUTH_TOKEN"},
		{name: "plain http", remote: "http://git.example.com/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN": "tok"}, warn: "GIT_AUTH_TOKEN"},
		{name: "plain http, host secret", remote: "http://git.example.com/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN.git.example.com": "tok", "GIT_AUTH_TOKEN": "tok"}, warn: "GIT_AUTH_TOKEN.git.example.com"},
		{name: "plain http, no secret", remote: "http://git.example.com/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN.other": "tok"}},
		{name: "ssh", remote: "git@git.example.com:org/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN": "tok"}},
		{name: "ssh URL", remote: "ssh://git@git.example.com/org/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN": "tok"}},
		{name: "git://", remote: "git://git.example.com/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN": "tok"}},
		{name: "file://", remote: "file:///srv/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN": "tok"}},
		{name: "no secrets", remote: "https://git.example.com/app.git"},
		{name: "a line break", remote: "https://git.example.com/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN": "tok\nX-Evil: 1"},
			bad: "secret GIT_AUTH_TOKEN holds a control character"},
		{name: "a header with a line break", remote: "https://git.example.com/app.git", secrets: map[string]string{"GIT_AUTH_HEADER": "bearer a\r\nX-Evil: 1"},
			bad: "secret GIT_AUTH_HEADER holds a control character"},
		{name: "empty", remote: "https://git.example.com/app.git", secrets: map[string]string{"GIT_AUTH_TOKEN": " \n"},
			bad: "secret GIT_AUTH_TOKEN is empty"},
		{name: "an unused bad secret", remote: "https://git.example.com/app.git",
			secrets: map[string]string{"GIT_AUTH_TOKEN.git.example.com": "tok", "GIT_AUTH_TOKEN": ""},
			header:  basicToken("x-access-token:tok"), secret: "GIT_AUTH_TOKEN.git.example.com", scope: "https://git.example.com/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(id string) (string, bool, error) {
				v, ok := tc.secrets[id]
				return v, ok, nil
			}
			auth, warn, err := gitAuthFor(tc.remote, lookup)
			if (err != nil) != (tc.bad != "") || err != nil && !strings.Contains(err.Error(), tc.bad) {
				t.Fatalf("error %v, want %q", err, tc.bad)
			}
			for _, v := range tc.secrets {
				if v := strings.TrimSpace(v); err != nil && len(v) > 3 && strings.Contains(err.Error(), v) {
					t.Errorf("the error shows the secret: %v", err)
				}
			}
			if warn != tc.warn {
				t.Errorf("warning for %q, want %q", warn, tc.warn)
			}
			if tc.header == "" {
				if auth != nil {
					t.Errorf("sends %+v, want nothing", auth)
				}
				return
			}
			if auth == nil || auth.header != tc.header || auth.secret != tc.secret || auth.scope != tc.scope {
				t.Fatalf("sends %+v, want %q from %s to %s", auth, tc.header, tc.secret, tc.scope)
			}
			want := [][2]string{
				{"http." + tc.scope + ".extraheader", ""},
				{"http." + tc.scope + ".extraheader", "Authorization: " + tc.header},
				{"http." + tc.scope + ".followRedirects", "false"},
			}
			if got := auth.config(); !slices.Equal(got, want) {
				t.Errorf("config %q, want %q", got, want)
			}
			// Every form the credentials take is redacted.
			value := strings.TrimSpace(tc.secrets[tc.secret])
			_, cred, _ := strings.Cut(tc.header, " ")
			msg := redactAll("fatal: "+tc.header+" / "+cred+" / "+value+" refused", auth.hide...)
			for _, s := range []string{value, cred} {
				if strings.Contains(msg, s) {
					t.Errorf("redacted message %q shows %q", msg, s)
				}
			}
		})
	}
}

func TestGitAuthLookupError(t *testing.T) {
	boom := errors.New("secret GIT_AUTH_TOKEN: permission denied")
	_, _, err := gitAuthFor("https://git.example.com/app.git", func(id string) (string, bool, error) {
		if id == gitAuthTokenSecret {
			return "", false, boom
		}
		return "", false, nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("a secret that cannot be read: %v", err)
	}
}

// TestWithGitConfig: settings are numbered after those the caller's
// environment gives through GIT_CONFIG_COUNT, which stay.
func TestWithGitConfig(t *testing.T) {
	set := [][2]string{{"http.https://h/.extraheader", "Authorization: basic x"}, {"http.https://h/.followRedirects", "false"}}
	for _, tc := range []struct {
		env, want []string
	}{
		{nil, []string{"GIT_CONFIG_KEY_0=http.https://h/.extraheader", "GIT_CONFIG_VALUE_0=Authorization: basic x",
			"GIT_CONFIG_KEY_1=http.https://h/.followRedirects", "GIT_CONFIG_VALUE_1=false", "GIT_CONFIG_COUNT=2"}},
		{[]string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=a.b", "GIT_CONFIG_VALUE_0=c"}, []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=a.b", "GIT_CONFIG_VALUE_0=c",
			"GIT_CONFIG_KEY_1=http.https://h/.extraheader", "GIT_CONFIG_VALUE_1=Authorization: basic x",
			"GIT_CONFIG_KEY_2=http.https://h/.followRedirects", "GIT_CONFIG_VALUE_2=false", "GIT_CONFIG_COUNT=3"}},
		// The isolated environment of ADD resets the caller's count.
		{[]string{"GIT_CONFIG_COUNT=5", "GIT_CONFIG_COUNT=0"}, []string{"GIT_CONFIG_COUNT=5", "GIT_CONFIG_COUNT=0",
			"GIT_CONFIG_KEY_0=http.https://h/.extraheader", "GIT_CONFIG_VALUE_0=Authorization: basic x",
			"GIT_CONFIG_KEY_1=http.https://h/.followRedirects", "GIT_CONFIG_VALUE_1=false", "GIT_CONFIG_COUNT=2"}},
		{[]string{"GIT_CONFIG_COUNT=-3"}, []string{"GIT_CONFIG_COUNT=-3",
			"GIT_CONFIG_KEY_0=http.https://h/.extraheader", "GIT_CONFIG_VALUE_0=Authorization: basic x",
			"GIT_CONFIG_KEY_1=http.https://h/.followRedirects", "GIT_CONFIG_VALUE_1=false", "GIT_CONFIG_COUNT=2"}},
	} {
		if got := withGitConfig(slices.Clone(tc.env), set); !slices.Equal(got, tc.want) {
			t.Errorf("%q:\n got %q\nwant %q", tc.env, got, tc.want)
		}
	}
	if got := withGitConfig([]string{"A=1"}, nil); !slices.Equal(got, []string{"A=1"}) {
		t.Errorf("no settings: %q", got)
	}
}

// TestGitAuthExplain: a failed git command says what the credentials
// have to do with it.
func TestGitAuthExplain(t *testing.T) {
	auth := &gitAuth{secret: "GIT_AUTH_TOKEN.h"}
	for _, tc := range []struct {
		auth   *gitAuth
		remote string
		msg    string
		want   string
	}{
		{auth, "https://h/r.git", "git ls-remote: fatal: could not read Username for 'https://h': terminal prompts disabled", "refused the credentials of secret GIT_AUTH_TOKEN.h"},
		{auth, "https://h/r.git", "git fetch: fatal: unable to access 'https://h/r.git/': The requested URL returned error: 403", "refused the credentials of secret GIT_AUTH_TOKEN.h"},
		{auth, "https://h/r.git", "git ls-remote: fatal: unable to access 'https://h/r.git/': The requested URL returned error: 301", "follows no redirect"},
		{nil, "https://h/r.git", "git ls-remote: fatal: could not read Username for 'https://h': terminal prompts disabled", "--secret id=GIT_AUTH_TOKEN,env=VARIABLE"},
		{nil, "ssh://h/r.git", "git ls-remote: fatal: could not read Username", ""},
		{auth, "https://h/r.git", "git ls-remote: fatal: unable to access: Connection refused", ""},
	} {
		err := tc.auth.explain(tc.remote, errors.New(tc.msg))
		if tc.want == "" {
			if err.Error() != tc.msg {
				t.Errorf("%s: %v, want it as it is", tc.msg, err)
			}
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.msg) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.msg, err, tc.want)
		}
	}
}
