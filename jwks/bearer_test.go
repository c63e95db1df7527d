package jwks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// Paths of a Kubernetes API server's issuer discovery.
const (
	kubeDiscovery = "/.well-known/openid-configuration"
	kubeJWKS      = "/openid/v1/jwks"
)

// kubeServer serves discovery and a key set as a Kubernetes API server does: only to a
// request that carries Authorization: Bearer with the token it wants, 401 to any other.
// It records the Authorization header of every request.
type kubeServer struct {
	*httptest.Server
	keys *jwkstest.Server

	mu      sync.Mutex
	want    string
	jwksURI string   // the discovery document's; "" names its own
	away    string   // where /away redirects
	seen    []string // "path Authorization" of every request
}

func newKubeServer(t *testing.T, keys *jwkstest.Server, want string) *kubeServer {
	t.Helper()
	k := &kubeServer{keys: keys, want: want}
	k.Server = httptest.NewTLSServer(http.HandlerFunc(k.serve))
	t.Cleanup(k.Close)
	return k
}

func (k *kubeServer) serve(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seen = append(k.seen, r.URL.Path+" "+r.Header.Get("Authorization"))
	if r.Header.Get("Authorization") != "Bearer "+k.want {
		http.Error(w, `{"kind":"Status","code":401}`, http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case kubeDiscovery:
		uri := k.jwksURI
		if uri == "" {
			uri = k.URL + kubeJWKS
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": k.URL, "jwks_uri": uri})
	case kubeJWKS:
		_, _ = w.Write(k.keys.JWKS())
	case "/moved":
		http.Redirect(w, r, kubeJWKS, http.StatusFound)
	case "/away":
		http.Redirect(w, r, k.away, http.StatusFound)
	default:
		http.NotFound(w, r)
	}
}

func (k *kubeServer) set(f func(k *kubeServer)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f(k)
}

// requests returns and forgets what the server has seen.
func (k *kubeServer) requests() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.seen
	k.seen = nil
	return s
}

// caFile writes the certificate of httptest's TLS servers (one for all of them).
func caFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeToken replaces the token file as the kubelet does: a new file renamed over the
// old one.
func writeToken(t *testing.T, path, token string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// The tokens of these tests look like no other string in them, so that finding one in
// an error or a log line means it leaked.
const (
	secret1 = "sa.secret-token-one"
	secret2 = "sa.secret-token-two"
	secret3 = "sa.secret-token-three"
)

func TestBearerTokenFile(t *testing.T) {
	keys := lightServer(t)
	kube := newKubeServer(t, keys, secret1)
	ca := caFile(t, kube.Server)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, secret1)
	var logs e2etest.LockedBuffer
	set := newSet(t, keys, func(c *jwks.Config) {
		*c = jwks.Config{Issuer: kube.URL, CAFile: ca, BearerTokenFile: tokenFile}
	}, func(o *jwks.Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	var errs []error // every error the set returned, checked for the tokens at the end

	t.Run("discovery and the key set are fetched with the token", func(t *testing.T) {
		ready(t, set)
		if err := verify(context.Background(), set, keys.MustMint(nil)); err != nil {
			t.Fatal(err)
		}
		want := []string{kubeDiscovery + " Bearer " + secret1, kubeJWKS + " Bearer " + secret1}
		if got := kube.requests(); !slices.Equal(got, want) {
			t.Fatalf("requests = %q, want %q", got, want)
		}
	})

	t.Run("a token rotated in the file is used at the next fetch", func(t *testing.T) {
		writeToken(t, tokenFile, secret2)
		kube.set(func(k *kubeServer) { k.want = secret2 })
		if err := set.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := kube.requests(); !slices.Equal(got, []string{kubeJWKS + " Bearer " + secret2}) {
			t.Fatalf("requests = %q", got)
		}
	})

	t.Run("a refused token fails the fetch and keeps the last good keys", func(t *testing.T) {
		kube.set(func(k *kubeServer) { k.want = secret3 })
		err := set.Refresh(context.Background())
		var se *jwks.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || !errors.Is(err, jwks.ErrFetch) {
			t.Fatalf("Refresh = %v, want a 401 StatusError", err)
		}
		errs = append(errs, err)
		if !set.Ready() || verify(context.Background(), set, keys.MustMint(nil)) != nil {
			t.Fatal("the last good keys are lost")
		}
		kube.requests()
	})

	t.Run("a file that cannot be read fails the fetch, which is not sent without it", func(t *testing.T) {
		for name, prepare := range map[string]func(){
			"missing": func() { _ = os.Remove(tokenFile) },
			"empty":   func() { writeToken(t, tokenFile, "") },
			"garbled": func() { writeToken(t, tokenFile, secret1+" "+secret2) },
		} {
			prepare()
			err := set.Refresh(context.Background())
			if !errors.Is(err, jwks.ErrFetch) || !strings.Contains(err.Error(), "bearer token file") || !strings.Contains(err.Error(), tokenFile) {
				t.Errorf("%s: Refresh = %v, want a fetch error naming the token file", name, err)
			}
			errs = append(errs, err)
		}
		for _, r := range kube.requests() {
			if !strings.HasSuffix(r, " Bearer "+secret2) { // a background retry may send the token of before
				t.Fatalf("a request went out without the token: %q", r)
			}
		}
		writeToken(t, tokenFile, secret3)
		if err := set.Refresh(context.Background()); err != nil {
			t.Fatalf("after the file came back: %v", err)
		}
		kube.requests()
	})

	t.Run("neither errors nor log lines hold a token", func(t *testing.T) {
		for _, err := range errs {
			for _, s := range []string{secret1, secret2, secret3} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("an error holds a token: %v", err)
				}
			}
		}
		for _, s := range []string{secret1, secret2, secret3} {
			if strings.Contains(logs.String(), s) {
				t.Errorf("the log holds a token:\n%s", logs.String())
			}
		}
		if !strings.Contains(logs.String(), "bearer token file") {
			t.Errorf("the log does not say the file could not be read:\n%s", logs.String())
		}
	})
}

func TestBearerTokenStaysOnItsOrigins(t *testing.T) {
	keys := lightServer(t)
	kube := newKubeServer(t, keys, secret1)
	other := newKubeServer(t, keys, secret1) // another port: another origin
	ca := caFile(t, kube.Server)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, secret1)
	config := func(jwksURI string) func(*jwks.Config) {
		return func(c *jwks.Config) {
			*c = jwks.Config{Issuer: kube.URL, JWKSURI: jwksURI, CAFile: ca, BearerTokenFile: tokenFile}
		}
	}

	t.Run("a redirect within the origin keeps it", func(t *testing.T) {
		set := newSet(t, keys, config(kube.URL+"/moved"))
		ready(t, set)
		if got := kube.requests(); !slices.Equal(got, []string{"/moved Bearer " + secret1, kubeJWKS + " Bearer " + secret1}) {
			t.Fatalf("requests = %q", got)
		}
	})

	t.Run("a redirect to another origin is refused before anything is sent there", func(t *testing.T) {
		kube.set(func(k *kubeServer) { k.away = other.URL + kubeJWKS })
		set := newSet(t, keys, config(kube.URL+"/away"))
		if err := set.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "another origin") {
			t.Fatalf("Refresh = %v, want the redirect refused", err)
		}
		if got := other.requests(); len(got) != 0 {
			t.Fatalf("the other origin got %q", got)
		}
		kube.requests()
	})

	t.Run("a jwks_uri that discovery names on another origin gets no token", func(t *testing.T) {
		kube.set(func(k *kubeServer) { k.jwksURI = other.URL + kubeJWKS })
		set := newSet(t, keys, config(""))
		err := set.Refresh(context.Background())
		var se *jwks.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || !strings.Contains(err.Error(), "was not sent to") {
			t.Fatalf("Refresh = %v, want a 401 that says the token was withheld", err)
		}
		if strings.Contains(err.Error(), secret1) {
			t.Fatalf("the error holds the token: %v", err)
		}
		// A retry in the background may come after the first attempt: each request
		// counts, not how many there were.
		got := other.requests()
		if len(got) == 0 || slices.ContainsFunc(got, func(r string) bool { return r != kubeJWKS+" " }) {
			t.Fatalf("the other origin got %q, want requests without Authorization", got)
		}
		got = kube.requests()
		if len(got) == 0 || slices.ContainsFunc(got, func(r string) bool { return r != kubeDiscovery+" Bearer "+secret1 }) {
			t.Fatalf("the issuer got %q", got)
		}
	})

	t.Run("an explicit JWKSURI on another origin gets it", func(t *testing.T) {
		set := newSet(t, keys, config(other.URL+kubeJWKS))
		ready(t, set)
		if got := other.requests(); !slices.Equal(got, []string{kubeJWKS + " Bearer " + secret1}) {
			t.Fatalf("requests = %q", got)
		}
	})
}

func TestBearerTokenFileOverLoopbackHTTP(t *testing.T) {
	// Plain http to a loopback host is allowed for tests and the demo (docs/keys.md); a
	// token goes there too, as it never leaves the machine.
	keys := lightServer(t)
	var got bytes.Buffer
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got.WriteString(r.Header.Get("Authorization"))
		mu.Unlock()
		_, _ = w.Write(keys.JWKS())
	}))
	t.Cleanup(srv.Close)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, secret1)
	set := newSet(t, keys, func(c *jwks.Config) {
		*c = jwks.Config{Issuer: srv.URL, JWKSURI: srv.URL + kubeJWKS, BearerTokenFile: tokenFile}
	})
	ready(t, set)
	mu.Lock()
	defer mu.Unlock()
	if got.String() != "Bearer "+secret1 {
		t.Fatalf("Authorization = %q", got.String())
	}
}

// With JWKSURI, which skips discovery, IssuerCheckURL compares the configured issuer
// with the one the server's discovery document names, once, with the bearer token:
// a wrong issuer is logged as an error that says both, and the keys load anyway.
func TestIssuerCheckURL(t *testing.T) {
	keys := lightServer(t)
	kube := newKubeServer(t, keys, secret1) // its discovery document names kube.URL
	ca := caFile(t, kube.Server)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, secret1)
	for _, tc := range []struct {
		name, issuer, check string
		level, want         string
	}{
		{"the same issuer", kube.URL, kube.URL + kubeDiscovery, "INFO", "the issuer is the one the server's discovery document names"},
		{"another issuer", kube.URL + "/", kube.URL + kubeDiscovery, "ERROR", `"configured":"` + kube.URL + `/","discovered":"` + kube.URL + `"`},
		{"a document that is not there", kube.URL, kube.URL + "/nowhere", "WARN", "status 404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs e2etest.LockedBuffer
			set := newSet(t, keys, func(c *jwks.Config) {
				*c = jwks.Config{Issuer: tc.issuer, JWKSURI: kube.URL + kubeJWKS, IssuerCheckURL: tc.check, CAFile: ca, BearerTokenFile: tokenFile}
			}, func(o *jwks.Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
			ready(t, set)
			eventually(t, "the issuer check's log line", func() bool { return strings.Contains(logs.String(), tc.want) })
			if !strings.Contains(logs.String(), `"level":"`+tc.level+`"`) {
				t.Errorf("no %s line:\n%s", tc.level, logs.String())
			}
			// Both with the token; the check once.
			want := []string{kubeJWKS + " Bearer " + secret1, strings.TrimPrefix(tc.check, kube.URL) + " Bearer " + secret1}
			if got := kube.requests(); !slices.Equal(got, want) {
				t.Errorf("requests = %q, want %q", got, want)
			}
		})
	}
}

// An inline key set loads at once, never fetches, and says where its keys come from.
func TestInlineJWKS(t *testing.T) {
	keys := lightServer(t)
	doc := string(keys.JWKS())
	set := newSet(t, keys, func(c *jwks.Config) { *c = jwks.Config{Issuer: keys.Issuer, JWKS: doc} })
	ready(t, set)
	if err := verify(context.Background(), set, keys.MustMint(nil)); err != nil {
		t.Fatal(err)
	}
	if err := set.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := keys.JWKSFetches(); n != 0 {
		t.Errorf("the issuer was asked %d times", n)
	}
	if st := set.Status(); st.JWKSURI != "inline" || st.Keys == 0 {
		t.Errorf("status %+v", st)
	}
}

// The issuer check waits for the first fetch that loads keys: while the API server
// refuses the pod's token (or cannot be reached), checking the issuer would fail too,
// say nothing about it, and hold up the retry of the keys.
func TestIssuerCheckAfterAFailedFetch(t *testing.T) {
	keys := lightServer(t)
	kube := newKubeServer(t, keys, secret1)
	ca := caFile(t, kube.Server)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, secret2) // refused: 401
	var logs e2etest.LockedBuffer
	var seen []string
	set := newSet(t, keys, func(c *jwks.Config) {
		*c = jwks.Config{Issuer: kube.URL, JWKSURI: kube.URL + kubeJWKS, IssuerCheckURL: kube.URL + kubeDiscovery, CAFile: ca, BearerTokenFile: tokenFile}
	}, func(o *jwks.Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	// The start-up fetch and its retry, a second later, both refused.
	eventually(t, "two refused fetches of the keys", func() bool {
		seen = append(seen, kube.requests()...)
		return len(seen) >= 2
	})
	for _, r := range seen {
		if r != kubeJWKS+" Bearer "+secret2 {
			t.Fatalf("requests while the token is refused = %q, want only the key set's", seen)
		}
	}
	if strings.Contains(logs.String(), "the issuer") {
		t.Fatalf("the issuer was checked while no keys loaded:\n%s", logs.String())
	}
	writeToken(t, tokenFile, secret1)
	ready(t, set)
	eventually(t, "the issuer check's log line", func() bool {
		return strings.Contains(logs.String(), "the issuer is the one the server's discovery document names")
	})
	if got := kube.requests(); !slices.Contains(got, kubeDiscovery+" Bearer "+secret1) {
		t.Errorf("requests = %q, want the discovery document read with the token", got)
	}
}
