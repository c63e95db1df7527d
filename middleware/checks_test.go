package middleware_test

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

func TestClaimsChecksRefuseOncePerToken(t *testing.T) {
	var calls atomic.Int64
	e := newEnvWith(t, nil, middleware.Options{ClaimsChecks: []func(*middleware.Claims) error{
		func(c *middleware.Claims) error {
			calls.Add(1)
			if c.Subject == "mallory" {
				return errors.New("subject not forwardable")
			}
			return nil
		},
	}})
	bad := e.as.MustMint(jwkstest.Claims{"sub": "mallory", "scope": "orders:read"})
	for range 2 {
		w := e.do("GET", "/orders/1", bearer(bad))
		if w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("a token the check refuses: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
	if n := e.count(middleware.DecisionDenied, "claims", "GET /orders/{id}"); n != 2 {
		t.Fatalf("%v claims denials counted, want 2", n)
	}
	good := e.as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "orders:read"})
	for range 3 {
		if w := e.do("GET", "/orders/1", bearer(good)); w.Code != 200 {
			t.Fatalf("a token the check accepts: %d", w.Code)
		}
	}
	if e.api.calls.Load() != 3 {
		t.Fatalf("the API saw %d requests, want the 3 allowed", e.api.calls.Load())
	}
	// Once per token: the verdict is cached with the token, either way.
	if n := calls.Load(); n != 2 {
		t.Fatalf("the check ran %d times for two tokens, want 2", n)
	}
}

func TestRequestChecksComeFirstEvenInShadowMode(t *testing.T) {
	refuse := errors.New("cannot be forwarded")
	e := newEnvWith(t, nil, middleware.Options{RequestChecks: []func(*http.Request) error{
		func(r *http.Request) error {
			switch r.Header.Get("X-Test") {
			case "plain":
				return refuse
			case "typed":
				return &middleware.Error{Reason: middleware.ReasonNoRoute, Err: refuse}
			}
			return nil
		},
	}})
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	for _, tc := range []struct {
		name, path, header string
		status             int
		reason, route      string
	}{
		{"a plain error is a malformed request", "/orders/1", "X-Test: plain", 400, "malformed_request", "GET /orders/{id}"},
		{"an *Error keeps its reason", "/orders/1", "X-Test: typed", 403, "no_route", "GET /orders/{id}"},
		{"a shadow route forwards policy denials, not these", "/shadow/x", "X-Test: plain", 400, "malformed_request", "/shadow/"},
		{"a request no route matches", "/nowhere", "X-Test: plain", 400, "malformed_request", middleware.NoRoute},
		{"a public route", "/healthz", "X-Test: plain", 400, "malformed_request", "GET /healthz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.api.calls.Load()
			w := e.do("GET", tc.path, bearer(tok), tc.header)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if e.api.calls.Load() != before {
				t.Fatal("the request reached the API")
			}
			r := httptest.NewRequest("GET", tc.path, nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			name, value, _ := strings.Cut(tc.header, ": ")
			r.Header.Set(name, value)
			d := e.gate.Decide(r)
			if d.Outcome != middleware.DecisionDenied || string(d.Reason) != tc.reason || d.Route != tc.route || !errors.Is(d.Err, refuse) {
				t.Fatalf("Decide = %v %s %s %v, want denied %s %s", d.Outcome, d.Reason, d.Route, d.Err, tc.reason, tc.route)
			}
		})
	}
	if w := e.do("GET", "/orders/1", bearer(tok)); w.Code != 200 {
		t.Fatalf("a request the check passes: %d", w.Code)
	}
}

func TestDecisionFrom(t *testing.T) {
	if _, ok := middleware.DecisionFrom(httptest.NewRequest("GET", "/", nil).Context()); ok {
		t.Fatal("a Decision in a context Handler never saw")
	}
	e := newEnv(t, nil)
	var got middleware.Decision
	var ok bool
	h := e.gate.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok = middleware.DecisionFrom(r.Context())
	}))
	r := httptest.NewRequest("GET", "/shadow/x", nil)
	r.Header.Set("Authorization", "Bearer "+e.as.MustMint(nil))
	h.ServeHTTP(httptest.NewRecorder(), r)
	if !ok || got.Outcome != middleware.DecisionShadowDenied || got.Reason != middleware.ReasonInsufficientScope || got.Route != "/shadow/" {
		t.Fatalf("DecisionFrom on a shadow route = %+v, %v", got, ok)
	}
}

// An issuer's own checks (Issuer.Checks) hold that issuer's tokens alone, once per
// token, on the whole payload even when the cache keeps few claims, and refuse with
// 401 claims before the Gate's checks run.
func TestIssuerChecks(t *testing.T) {
	other, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	var issuerCalls, gateCalls atomic.Int64
	check := middleware.ClaimsCheckFunc(func(c *middleware.Claims) error {
		issuerCalls.Add(1)
		// The whole payload, though the cache keeps no claim but scope.
		if _, ok := c.Raw["workload"]; !ok {
			return errors.New("no workload claim")
		}
		return nil
	})
	var logs strings.Builder
	e := newEnvWith(t, func(c *middleware.Config) {
		c.Issuers[0].Checks = []middleware.ClaimsCheck{check}
		c.Issuers = append(c.Issuers, middleware.Issuer{Config: jwks.Config{Issuer: other.Issuer}, Audiences: []string{audience}})
		c.Tokens.KeepClaims = []string{}
	}, middleware.Options{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		ClaimsChecks: []func(*middleware.Claims) error{func(*middleware.Claims) error {
			gateCalls.Add(1)
			return nil
		}},
	})

	without := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	with := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "workload": "billing"})
	otherIssuer := other.MustMint(jwkstest.Claims{"scope": "orders:read"})
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"refused by its issuer's check", without, 401},
		{"accepted by it", with, 200},
		{"another issuer's token is not held to it", otherIssuer, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.api.calls.Load()
			for range 2 {
				w := e.do("GET", "/orders/1", bearer(tc.token))
				if w.Code != tc.status {
					t.Fatalf("%d, want %d: %s", w.Code, tc.status, w.Body)
				}
				if tc.status == 401 && !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Fatalf("WWW-Authenticate %q", w.Header().Get("WWW-Authenticate"))
				}
			}
			want := before
			if tc.status == 200 {
				want += 2
			}
			if got := e.api.calls.Load(); got != want {
				t.Fatalf("the API saw %d requests, want %d", got-before, want-before)
			}
		})
	}
	if n := e.count(middleware.DecisionDenied, "claims", "GET /orders/{id}"); n != 2 {
		t.Errorf("%v claims denials counted, want 2", n)
	}
	if !strings.Contains(logs.String(), "no workload claim") || !strings.Contains(logs.String(), e.as.Issuer) {
		t.Errorf("the denial's log line does not say the check's error and the issuer:\n%s", logs.String())
	}
	// Once per token: two tokens of the issuer, each sent twice.
	if n := issuerCalls.Load(); n != 2 {
		t.Errorf("the issuer's check ran %d times, want 2", n)
	}
	// The Gate's checks run after the issuer's, so not on the refused token.
	if n := gateCalls.Load(); n != 2 {
		t.Errorf("the Gate's check ran %d times, want 2 (the accepted tokens)", n)
	}

	err = middleware.Validate(middleware.Config{
		Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: "https://a.example"}, Audiences: []string{audience}, Checks: []middleware.ClaimsCheck{nil}}},
	})
	var fe *middleware.FieldError
	if !errors.As(err, &fe) || fe.Field != "Issuers[0].Checks[0]" {
		t.Errorf("a nil check: %v", err)
	}
}
