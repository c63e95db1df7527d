package introspect_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testclock"
	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func TestActiveResultDecoded(t *testing.T) {
	as := server(t, nil)
	c := newClient(t, as.IntrospectionURL(), nil, nil, nil)
	now := time.Now().Truncate(time.Second)
	for _, tc := range []struct {
		name   string
		claims jwkstest.Claims
		want   func(*introspect.Result) string
	}{
		{"aud string", jwkstest.Claims{"aud": "https://orders.example.com"}, func(r *introspect.Result) string {
			if !slices.Equal(r.Audience, []string{"https://orders.example.com"}) {
				return fmt.Sprintf("aud %q", r.Audience)
			}
			return ""
		}},
		{"aud array", jwkstest.Claims{"aud": []string{"a", "b"}}, func(r *introspect.Result) string {
			if !slices.Equal(r.Audience, []string{"a", "b"}) {
				return fmt.Sprintf("aud %q", r.Audience)
			}
			return ""
		}},
		{"no aud", jwkstest.Claims{"aud": jwkstest.Absent}, func(r *introspect.Result) string {
			if r.Audience != nil {
				return fmt.Sprintf("aud %q", r.Audience)
			}
			return ""
		}},
		{"registered members", jwkstest.Claims{
			"scope": "orders:read orders:write", "sub": "alice", "client_id": "web", "token_type": "Bearer", "jti": "j-1",
			"exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "nbf": float64(now.Unix()) + 0.5,
		}, func(r *introspect.Result) string {
			switch {
			case r.Issuer != as.Issuer, r.Subject != "alice", r.ClientID != "web", r.TokenType != "Bearer", r.JTI != "j-1":
				return fmt.Sprintf("strings %+v", r)
			case r.Scope != "orders:read orders:write" || !slices.Equal(r.Scopes(), []string{"orders:read", "orders:write"}):
				return fmt.Sprintf("scope %q", r.Scope)
			case !r.ExpiresAt.Equal(now.Add(time.Minute)), !r.IssuedAt.Equal(now), !r.NotBefore.Equal(now.Add(500 * time.Millisecond)):
				return fmt.Sprintf("times %s %s %s", r.ExpiresAt, r.IssuedAt, r.NotBefore)
			}
			return ""
		}},
		{"no time claims", jwkstest.Claims{"exp": jwkstest.Absent, "iat": jwkstest.Absent}, func(r *introspect.Result) string {
			if !r.ExpiresAt.IsZero() || !r.IssuedAt.IsZero() || !r.NotBefore.IsZero() {
				return "times not zero"
			}
			return ""
		}},
		{"raw members", jwkstest.Claims{"cnf": map[string]string{"jkt": "abc"}, "tenant": "contoso"}, func(r *introspect.Result) string {
			if string(r.Raw["cnf"]) != `{"jkt":"abc"}` || string(r.Raw["tenant"]) != `"contoso"` || string(r.Raw["active"]) != "true" {
				return fmt.Sprintf("raw %s", r.Raw)
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := mustActive(t, c, as.MintOpaque(tc.claims))
			if msg := tc.want(res); msg != "" {
				t.Fatal(msg)
			}
		})
	}
}

func TestJWTIntrospected(t *testing.T) {
	as := server(t, nil)
	c := newClient(t, as.IntrospectionURL(), nil, nil, nil)
	res := mustActive(t, c, as.MustMint(jwkstest.Claims{"scope": "orders:read", "jti": "jwt-1"}))
	if res.JTI != "jwt-1" || res.Scope != "orders:read" || res.Issuer != as.Issuer || !slices.Equal(res.Audience, []string{as.Audience()}) {
		t.Fatalf("%+v", res)
	}
	forged := as.MustMint(nil, jwkstest.WithSigner(jwkstest.MustGenerateKey("rsa-1", "RS256")))
	mustInactive(t, c, forged)
}

func TestInactive(t *testing.T) {
	clk := testclock.New(epoch)
	as := server(t, clk)
	calls := &counter{}
	c := newClient(t, as.IntrospectionURL(), clk, nil, calls)
	mustInactive(t, c, "never-issued")
	mustInactive(t, c, as.MintOpaque(jwkstest.Claims{"exp": epoch.Add(-time.Second).Unix()}))
	revoked := as.MintOpaque(nil)
	as.Revoke(revoked)
	mustInactive(t, c, revoked)
	if calls.get(introspect.ResultInactive) != 3 || as.IntrospectionCalls() != 3 {
		t.Fatalf("OnCall %v, endpoint calls %d", calls.n, as.IntrospectionCalls())
	}
}

func TestEmptyAndLongTokensAreInactiveWithoutACall(t *testing.T) {
	as := server(t, nil)
	c := newClient(t, as.IntrospectionURL(), nil, nil, nil)
	mustInactive(t, c, "")
	mustInactive(t, c, strings.Repeat("a", introspect.MaxTokenBytes+1))
	if n := as.IntrospectionCalls(); n != 0 {
		t.Fatalf("%d calls", n)
	}
}

func TestRevokedStaysCachedUntilTTL(t *testing.T) {
	clk := testclock.New(epoch)
	as := server(t, clk)
	c := newClient(t, as.IntrospectionURL(), clk, func(cfg *introspect.Config) { cfg.CacheTTL = 30 * time.Second }, nil)
	tok := as.MintOpaque(jwkstest.Claims{"exp": epoch.Add(time.Hour).Unix()})
	mustActive(t, c, tok)
	as.Revoke(tok)
	clk.Advance(30*time.Second - time.Nanosecond)
	mustActive(t, c, tok) // cached: the revocation is not seen yet
	if n := as.IntrospectionCalls(); n != 1 {
		t.Fatalf("%d calls within the TTL", n)
	}
	clk.Advance(time.Nanosecond)
	mustInactive(t, c, tok)
	if n := as.IntrospectionCalls(); n != 2 {
		t.Fatalf("%d calls after the TTL", n)
	}
}

func TestCacheNeverPastExp(t *testing.T) {
	clk := testclock.New(epoch)
	as := server(t, clk)
	c := newClient(t, as.IntrospectionURL(), clk, nil, nil) // CacheTTL 60s
	tok := as.MintOpaque(jwkstest.Claims{"exp": epoch.Add(10 * time.Second).Unix()})
	mustActive(t, c, tok)
	clk.Advance(10*time.Second - time.Nanosecond)
	mustActive(t, c, tok)
	if n := as.IntrospectionCalls(); n != 1 {
		t.Fatalf("%d calls before exp", n)
	}
	clk.Advance(time.Nanosecond)
	mustInactive(t, c, tok) // asked again at exp: the server says inactive
	if n := as.IntrospectionCalls(); n != 2 {
		t.Fatalf("%d calls at exp", n)
	}
}

// An active answer whose exp has passed (clocks apart) is returned as it is, for the
// caller to refuse, and not cached.
func TestExpiredAnswerReturnedAsIsNotCached(t *testing.T) {
	var calls atomic.Int64
	srv := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, `{"active":true,"exp":1000}`)
	})
	c := newClient(t, srv.URL, nil, nil, nil)
	for range 2 {
		if res := mustActive(t, c, "tok"); !res.ExpiresAt.Equal(time.Unix(1000, 0)) {
			t.Fatalf("exp %s", res.ExpiresAt)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d calls: the answer was cached", n)
	}
}

func TestNegativeTTL(t *testing.T) {
	clk := testclock.New(epoch)
	as := server(t, clk)
	c := newClient(t, as.IntrospectionURL(), clk, func(cfg *introspect.Config) { cfg.NegativeTTL = 5 * time.Second }, nil)
	mustInactive(t, c, "unknown")
	clk.Advance(5*time.Second - time.Nanosecond)
	mustInactive(t, c, "unknown")
	if n := as.IntrospectionCalls(); n != 1 {
		t.Fatalf("%d calls within the negative TTL", n)
	}
	clk.Advance(time.Nanosecond)
	mustInactive(t, c, "unknown")
	if n := as.IntrospectionCalls(); n != 2 {
		t.Fatalf("%d calls after it", n)
	}
}

func TestNegativeTTLsTurnCachingOff(t *testing.T) {
	as := server(t, nil)
	c := newClient(t, as.IntrospectionURL(), nil, func(cfg *introspect.Config) { cfg.CacheTTL, cfg.NegativeTTL = -1, -1 }, nil)
	tok := as.MintOpaque(nil)
	for range 3 {
		mustActive(t, c, tok)
		mustInactive(t, c, "unknown")
	}
	if n := as.IntrospectionCalls(); n != 6 {
		t.Fatalf("%d calls", n)
	}
}

func TestErrorsAreNotCached(t *testing.T) {
	as := server(t, nil)
	calls := &counter{}
	c := newClient(t, as.IntrospectionURL(), nil, nil, calls)
	tok := as.MintOpaque(nil)
	as.SetIntrospectionFault(jwkstest.IntrospectionGarbage)
	for range 2 {
		if _, err := introspectOnce(t, c, tok); !errors.Is(err, introspect.ErrUnavailable) {
			t.Fatal(err)
		}
	}
	as.SetIntrospectionFault(jwkstest.IntrospectionNormal)
	mustActive(t, c, tok)
	if n := as.IntrospectionCalls(); n != 3 {
		t.Fatalf("%d calls", n)
	}
	if calls.get(introspect.ResultError) != 2 || calls.get(introspect.ResultActive) != 1 {
		t.Fatalf("OnCall %v", calls.n)
	}
}

// faultCases are every way the endpoint can fail, each set up on as (with the
// resource server registered) or answered by a server of the test's own.
func faultCases() []struct {
	name string
	set  func(t *testing.T, as *jwkstest.Server) (endpoint string)
} {
	answer := func(status int, body string) func(t *testing.T, as *jwkstest.Server) string {
		return func(t *testing.T, _ *jwkstest.Server) string {
			return endpoint(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
				_, _ = io.WriteString(w, body)
			}).URL
		}
	}
	fault := func(f jwkstest.IntrospectionFault) func(t *testing.T, as *jwkstest.Server) string {
		return func(_ *testing.T, as *jwkstest.Server) string {
			as.SetIntrospectionFault(f)
			return as.IntrospectionURL()
		}
	}
	return []struct {
		name string
		set  func(t *testing.T, as *jwkstest.Server) string
	}{
		{"slow", fault(jwkstest.IntrospectionSlow)},
		{"connection closed", fault(jwkstest.IntrospectionDown)},
		{"garbage", fault(jwkstest.IntrospectionGarbage)},
		{"oversized", fault(jwkstest.IntrospectionOversized)},
		{"active missing", fault(jwkstest.IntrospectionMissingActive)},
		{"503", func(_ *testing.T, as *jwkstest.Server) string { as.SetDown(true); return as.IntrospectionURL() }},
		{"nothing listening", func(t *testing.T, _ *jwkstest.Server) string {
			srv := endpoint(t, nil)
			srv.Close()
			return srv.URL
		}},
		{"wrong credentials", func(_ *testing.T, as *jwkstest.Server) string {
			as.AddClient(jwkstest.Client{ID: clientID, Secret: "another"})
			return as.IntrospectionURL()
		}},
		{"active a string", answer(200, `{"active":"true"}`)},
		{"active null", answer(200, `{"active":null}`)},
		{"active twice", answer(200, `{"active":false,"active":true}`)},
		{"Active in another case", answer(200, `{"Active":true}`)},
		{"an array", answer(200, `[{"active":true}]`)},
		{"trailing data", answer(200, `{"active":true} {}`)},
		{"exp a string", answer(200, `{"active":true,"exp":"1700000000"}`)},
		{"aud a number", answer(200, `{"active":true,"aud":1}`)},
		{"scope an array", answer(200, `{"active":true,"scope":["a"]}`)},
		{"invalid UTF-8", answer(200, "{\"active\":true,\"sub\":\"\xff\"}")},
		{"500", answer(500, `{"active":true}`)},
		{"redirect", answer(http.StatusTemporaryRedirect, "")},
		{"204", answer(http.StatusNoContent, "")},
	}
}

func TestFaultsAreUnavailable(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, tc := range faultCases() {
		t.Run(tc.name, func(t *testing.T) {
			as := server(t, nil)
			calls := &counter{}
			c := newClient(t, tc.set(t, as), nil, func(cfg *introspect.Config) { cfg.Timeout = timeout }, calls)
			start := time.Now()
			res, err := introspectOnce(t, c, as.MintOpaque(nil))
			took := time.Since(start)
			if !errors.Is(err, introspect.ErrUnavailable) || errors.Is(err, introspect.ErrInactive) || res != nil {
				t.Fatalf("want ErrUnavailable only, got %+v, %v", res, err)
			}
			var e *introspect.Error
			if !errors.As(err, &e) {
				t.Fatalf("%T is not an *Error", err)
			}
			// Bounded by Timeout, with a margin generous enough for a busy machine.
			if took > timeout+3*time.Second {
				t.Fatalf("took %s with a timeout of %s", took, timeout)
			}
			if calls.get(introspect.ResultError) != 1 {
				t.Fatalf("OnCall %v", calls.n)
			}
			t.Log(err)
		})
	}
}

func TestSingleflight(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int64
	srv := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-release
		_, _ = io.WriteString(w, `{"active":true,"sub":"alice"}`)
	})
	c := newClient(t, srv.URL, nil, nil, nil)
	const callers = 100
	var started, done sync.WaitGroup
	results := make(chan *introspect.Result, callers)
	for range callers {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			res, err := c.Introspect(context.Background(), "one-token")
			if err != nil {
				t.Error(err)
			}
			results <- res
		}()
	}
	started.Wait()
	time.Sleep(50 * time.Millisecond) // let every caller reach the wait
	close(release)
	done.Wait()
	close(results)
	var first *introspect.Result
	for res := range results {
		if first == nil {
			first = res
		}
		if res != first {
			t.Fatal("callers got different results")
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d callers made %d calls", callers, n)
	}
}

// A caller that gives up gets ErrUnavailable with its context's error; the one call
// goes on for the others and fills the cache.
func TestCallerGivesUpOthersGetTheAnswer(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	var calls atomic.Int64
	srv := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			arrived <- struct{}{}
		}
		<-release
		_, _ = io.WriteString(w, `{"active":true}`)
	})
	c := newClient(t, srv.URL, nil, nil, nil)

	patient := make(chan error, 1)
	go func() {
		_, err := c.Introspect(context.Background(), "tok")
		patient <- err
	}()
	<-arrived
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Introspect(ctx, "tok"); !errors.Is(err, introspect.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled caller got %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Introspect(ctx, "tok"); !errors.Is(err, introspect.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an impatient caller got %v", err)
	}
	close(release)
	if err := <-patient; err != nil {
		t.Fatal(err)
	}
	mustActive(t, c, "tok") // from the cache
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d calls", n)
	}
}

func TestCloseStopsCallsInFlight(t *testing.T) {
	as := server(t, nil)
	as.SetIntrospectionFault(jwkstest.IntrospectionSlow)
	c, err := introspect.New(introspect.Config{Endpoint: as.IntrospectionURL(), ClientID: clientID, ClientSecret: []byte(secret), Timeout: time.Minute}, introspect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := c.Introspect(context.Background(), "tok")
		got <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); as.IntrospectionCalls() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the call never arrived")
		}
	}
	start := time.Now()
	c.Close()
	if err := <-got; !errors.Is(err, introspect.ErrUnavailable) {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %s", took)
	}
	if _, err := c.Introspect(context.Background(), "another"); !errors.Is(err, introspect.ErrUnavailable) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestCacheBound(t *testing.T) {
	as := server(t, nil)
	c := newClient(t, as.IntrospectionURL(), nil, func(cfg *introspect.Config) { cfg.MaxEntries = 10 }, nil)
	first := as.MintOpaque(nil)
	mustActive(t, c, first)
	for range 30 {
		mustActive(t, c, as.MintOpaque(nil))
	}
	calls := as.IntrospectionCalls()
	mustActive(t, c, first) // evicted, so asked again
	if as.IntrospectionCalls() != calls+1 {
		t.Fatal("the first token's answer was still cached among 31 with a bound of 10")
	}
}

// Neither the token nor the secret appears in any error, in any form a log could
// show: as is, form-encoded, or in the Basic header.
func TestSecretAndTokenNeverInErrors(t *testing.T) {
	const special = "p@ss w:rd/+&=ü"
	forms := []string{secret, url.QueryEscape(secret), base64.StdEncoding.EncodeToString([]byte(clientID + ":" + secret)),
		special, url.QueryEscape(special), base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(clientID) + ":" + url.QueryEscape(special)))}
	check := func(t *testing.T, err error, token string) {
		t.Helper()
		if err == nil {
			return
		}
		text := fmt.Sprintf("%v %+v %#v", err, err, err)
		for _, f := range append(slices.Clone(forms), token, url.QueryEscape(token)) {
			if f != "" && strings.Contains(text, f) {
				t.Fatalf("an error shows %q: %s", f, text)
			}
		}
	}
	for _, tc := range faultCases() {
		t.Run(tc.name, func(t *testing.T) {
			as := server(t, nil)
			c := newClient(t, tc.set(t, as), nil, func(cfg *introspect.Config) { cfg.Timeout = 200 * time.Millisecond }, nil)
			tok := as.MintOpaque(nil)
			_, err := introspectOnce(t, c, tok)
			check(t, err, tok)
		})
	}
	t.Run("inactive", func(t *testing.T) {
		as := server(t, nil)
		c := newClient(t, as.IntrospectionURL(), nil, nil, nil)
		for range 2 { // fresh, then cached
			_, err := introspectOnce(t, c, "unknown-token-xyz")
			check(t, err, "unknown-token-xyz")
		}
	})
	t.Run("config", func(t *testing.T) {
		for _, cfg := range []introspect.Config{
			{Endpoint: "http://example.com/introspect", ClientSecret: []byte(special), Timeout: -1},
			{Endpoint: "https://user:pw@example.com/i", ClientID: "x", ClientSecret: []byte(special)},
		} {
			_, err := introspect.New(cfg, introspect.Options{})
			check(t, err, "")
			check(t, fmt.Errorf("%v %+v %#v %s", cfg, cfg, cfg, cfg), "")
		}
	})
	t.Run("client printed", func(t *testing.T) {
		c := newClient(t, "https://auth.example.com/introspect", nil, func(cfg *introspect.Config) { cfg.ClientSecret = []byte(special) }, nil)
		check(t, fmt.Errorf("%v %+v", c, c), "")
	})
}

// The request: POST, a form with token and token_type_hint, client_secret_basic with
// the id and secret form-encoded first (RFC 6749 §2.3.1), Accept application/json.
func TestRequest(t *testing.T) {
	const id, special = "orders api:1/é", "p@ss w:rd/+%&=ü"
	type request struct {
		method string
		header http.Header
		form   url.Values
		user   string
		pass   string
	}
	requests := make(chan request, 1)
	srv := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		user, pass, _ := r.BasicAuth()
		requests <- request{r.Method, r.Header.Clone(), r.PostForm, user, pass}
		_, _ = io.WriteString(w, `{"active":true}`)
	})
	c := newClient(t, srv.URL, nil, func(cfg *introspect.Config) {
		cfg.ClientID, cfg.ClientSecret, cfg.TokenTypeHint = id, []byte(special), "refresh_token"
	}, nil)
	const tok = "a+b/c=d&e f"
	mustActive(t, c, tok)
	got := <-requests
	form := got.form
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(special)))
	switch {
	case got.method != http.MethodPost:
		t.Fatalf("method %s", got.method)
	case got.header.Get("Content-Type") != "application/x-www-form-urlencoded":
		t.Fatalf("content type %q", got.header.Get("Content-Type"))
	case got.header.Get("Accept") != "application/json":
		t.Fatalf("accept %q", got.header.Get("Accept"))
	case got.header.Get("Authorization") != wantAuth:
		t.Fatalf("authorization %q, want %q", got.header.Get("Authorization"), wantAuth)
	case form.Get("token") != tok || form.Get("token_type_hint") != "refresh_token" || len(form) != 2:
		t.Fatalf("form %v", form)
	}
	if u, _ := url.QueryUnescape(got.user); u != id {
		t.Fatalf("user %q", u)
	}
	if p, _ := url.QueryUnescape(got.pass); p != special {
		t.Fatalf("password %q", p)
	}

	// The same credentials at jwkstest, which decodes them the RFC's way.
	as := server(t, nil)
	as.AddClient(jwkstest.Client{ID: id, Secret: special})
	c = newClient(t, as.IntrospectionURL(), nil, func(cfg *introspect.Config) { cfg.ClientID, cfg.ClientSecret = id, []byte(special) }, nil)
	mustActive(t, c, as.MintOpaque(nil))
}

func TestDefaultHint(t *testing.T) {
	hint := make(chan string, 1)
	srv := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		hint <- r.PostFormValue("token_type_hint")
		_, _ = io.WriteString(w, `{"active":false}`)
	})
	c := newClient(t, srv.URL, nil, nil, nil)
	mustInactive(t, c, "tok")
	if h := <-hint; h != "access_token" {
		t.Fatalf("hint %q", h)
	}
}

// A redirect is never followed, with the Client's own http.Client or with one the
// caller gives (which would follow it): the token and the credentials would go to
// the new location.
func TestRedirectNotFollowed(t *testing.T) {
	as := server(t, nil)
	redirector := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, as.IntrospectionURL(), http.StatusTemporaryRedirect)
	})
	given := &http.Client{}
	for _, tc := range []struct {
		name   string
		client *http.Client
	}{{"own client", nil}, {"given client", given}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := introspect.New(introspect.Config{Endpoint: redirector.URL, ClientID: clientID, ClientSecret: []byte(secret)}, introspect.Options{Client: tc.client})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = introspectOnce(t, c, as.MintOpaque(nil))
			if !errors.Is(err, introspect.ErrUnavailable) || !strings.Contains(err.Error(), "status 307") {
				t.Fatal(err)
			}
			if n := as.IntrospectionCalls(); n != 0 {
				t.Fatalf("the redirect was followed: %d calls", n)
			}
		})
	}
	if given.CheckRedirect != nil {
		t.Fatal("New changed the caller's client")
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := introspect.New(introspect.Config{
		Endpoint: "http://auth.example.com/introspect", Timeout: -time.Second, MaxEntries: -1, MaxResponseBytes: -1, TokenTypeHint: "a\nb",
	}, introspect.Options{})
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *introspect.ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("%T %v", e, e)
		}
		fields = append(fields, ce.Field)
	}
	want := []string{"Endpoint", "ClientID", "ClientSecret", "TokenTypeHint", "Timeout", "MaxEntries", "MaxResponseBytes"}
	if !slices.Equal(fields, want) {
		t.Fatalf("fields %v, want %v (every problem at once): %v", fields, want, err)
	}

	for _, tc := range []struct {
		endpoint string
		insecure bool
		ok       bool
	}{
		{"https://auth.example.com/introspect", false, true},
		{"http://127.0.0.1:8080/introspect", false, true},
		{"http://localhost/introspect", false, true},
		{"http://[::1]/introspect", false, true},
		{"http://auth.example.com/introspect", true, true},
		{"https://auth.example.com/introspect?realm=a", false, true},
		{"", false, false},
		{"http://auth.example.com/introspect", false, false},
		{"ftp://auth.example.com/introspect", false, false},
		{"https://u:p@auth.example.com/introspect", false, false},
		{"https://auth.example.com/introspect#x", false, false},
		{"/introspect", false, false},
		{"https://%zz", false, false},
	} {
		_, err := introspect.New(introspect.Config{Endpoint: tc.endpoint, InsecureHTTP: tc.insecure, ClientID: "a", ClientSecret: []byte("b")}, introspect.Options{})
		var ce *introspect.ConfigError
		if tc.ok != (err == nil) || !tc.ok && (!errors.As(err, &ce) || ce.Field != "Endpoint") {
			t.Errorf("%q insecure %t: %v", tc.endpoint, tc.insecure, err)
		}
	}
}

func TestResultJSONRoundTrip(t *testing.T) {
	// Raw keeps every member as sent, so a caller can re-read the answer whole.
	srv := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"active":true,"groups":["a","b"],"n":1.5e3,"x":null}`)
	})
	c := newClient(t, srv.URL, nil, nil, nil)
	res := mustActive(t, c, "tok")
	var groups []string
	if err := json.Unmarshal(res.Raw["groups"], &groups); err != nil || !slices.Equal(groups, []string{"a", "b"}) {
		t.Fatalf("%v %v", groups, err)
	}
	if string(res.Raw["n"]) != "1.5e3" || string(res.Raw["x"]) != "null" || len(res.Raw) != 4 {
		t.Fatalf("%s", res.Raw)
	}
}
