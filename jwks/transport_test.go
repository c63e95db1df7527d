package jwks

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestBearerTransportDecidesAtEveryHop(t *testing.T) {
	// The token is added by the transport at each hop, never set on the client's
	// request: a client that follows a redirect to another origin (here the default
	// policy, without the Set's CheckRedirect) does not carry it there.
	var mu sync.Mutex
	seen := map[string]string{}
	record := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[name] = r.Header.Get("Authorization")
			mu.Unlock()
		}
	}
	other := httptest.NewServer(record("other"))
	defer other.Close()
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("issuer")(w, r)
		http.Redirect(w, r, other.URL+"/keys", http.StatusFound)
	}))
	defer issuer.Close()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := newTransport(DefaultHTTPTimeout, nil)
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: newBearerTransport(base, file, issuer.URL, "")}
	resp, err := client.Get(issuer.URL + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if seen["issuer"] != "Bearer secret" || seen["other"] != "" {
		t.Fatalf("Authorization seen: %q", seen)
	}
}

func TestBearerTransportSendsTo(t *testing.T) {
	b := newBearerTransport(nil, "unused", "https://Kubernetes.Default.svc", "http://127.0.0.1:8080/keys", "http://auth.example.com", "")
	for raw, want := range map[string]bool{
		"https://kubernetes.default.svc/openid/v1/jwks":     true,
		"https://kubernetes.default.svc:443/x":              true,  // the default port written out
		"https://KUBERNETES.default.svc./x":                 false, // a trailing dot is another name
		"https://kubernetes.default.svc:6443/x":             false,
		"http://kubernetes.default.svc/x":                   false, // http, not loopback
		"https://10.0.0.1:6443/openid/v1/jwks":              false, // a jwks_uri discovery names
		"http://127.0.0.1:8080/other":                       true,  // loopback http
		"http://127.0.0.1:8081/keys":                        false,
		"http://auth.example.com/jwks":                      false, // listed, but plain http to a host that is not loopback
		"https://kubernetes.default.svc.attacker.example/x": false,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.sendsTo(u); got != want {
			t.Errorf("sendsTo(%s) = %v, want %v", raw, got, want)
		}
	}
}

func TestReadBearerToken(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) string {
		t.Helper()
		f, err := os.CreateTemp(dir, "token")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(content); err != nil {
			t.Fatal(err)
		}
		return f.Name()
	}
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJrIn0.c2ln"
	for content, want := range map[string]string{
		jwt:                         jwt,
		"  " + jwt + "\r\n":         jwt,
		"abc+/~_-.==":               "abc+/~_-.==",
		strings.Repeat("a", 16<<10): strings.Repeat("a", 16<<10),
	} {
		got, err := readBearerToken(write(content))
		if err != nil || got != want {
			t.Errorf("readBearerToken(%.20q) = %.20q, %v", content, got, err)
		}
	}
	for content, want := range map[string]string{
		"":                            "holds no token",
		" \n\t":                       "holds no token",
		"a b":                         "one bearer token",
		"a\nb":                        "one bearer token",
		"a\r\nX-Injected: 1":          "one bearer token",
		"===":                         "one bearer token",
		"a=b":                         "one bearer token",
		"tok\x00":                     "one bearer token",
		strings.Repeat("a", 16<<10+1): "over 16384 bytes",
	} {
		_, err := readBearerToken(write(content))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("readBearerToken(%.20q) = %v, want %q", content, err, want)
		}
		if c := strings.TrimSpace(content); err != nil && len(c) > 2 && strings.Contains(err.Error(), c) {
			t.Errorf("the error holds the file's content: %v", err)
		}
	}
	if _, err := readBearerToken(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "cannot be read") {
		t.Errorf("a missing file: %v", err)
	}
}

// A Set sends its token to the origins it fetches from: the key set's and the issuer
// check's, and the issuer's only when discovery runs there (no JWKSURI). A managed
// cluster's issuer is a public host that a pod's token has no business reaching.
func TestBearerOriginsOfASet(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler()) // fetches fail; only the origins matter
	t.Cleanup(srv.Close)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	const public = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
	for _, tc := range []struct {
		name         string
		cfg          Config
		sends, holds []string
	}{
		{
			"with JWKSURI, not the issuer",
			Config{Issuer: public, JWKSURI: srv.URL + "/openid/v1/jwks", IssuerCheckURL: srv.URL + "/.well-known/openid-configuration"},
			[]string{srv.URL + "/openid/v1/jwks", srv.URL + "/.well-known/openid-configuration"},
			[]string{public + "/.well-known/openid-configuration", public + "/keys"},
		},
		{
			"without JWKSURI, the issuer, where discovery runs",
			Config{Issuer: srv.URL},
			[]string{srv.URL + "/.well-known/openid-configuration", srv.URL + "/keys"},
			[]string{public + "/keys"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.BearerTokenFile = tokenFile
			s, err := New(t.Context(), tc.cfg, Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			for _, raw := range tc.sends {
				if u, _ := url.Parse(raw); !s.bearer.sendsTo(u) {
					t.Errorf("the token is not sent to %s", raw)
				}
			}
			for _, raw := range tc.holds {
				if u, _ := url.Parse(raw); s.bearer.sendsTo(u) {
					t.Errorf("the token would be sent to %s", raw)
				}
			}
		})
	}
}
