package middleware_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

// ruleFunc is a Rule from a function, counting its calls: the middleware's side of
// rules, without the CEL compiler (package rules tests that).
type ruleFunc struct {
	name  string
	allow func(*http.Request, *middleware.Claims) (bool, error)
	mu    sync.Mutex
	calls int
}

func (f *ruleFunc) Name() string { return f.name }

func (f *ruleFunc) Allow(r *http.Request, c *middleware.Claims) (bool, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	return f.allow(r, c)
}

func (f *ruleFunc) called() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func TestRules(t *testing.T) {
	tenant := &ruleFunc{name: "tenant", allow: func(r *http.Request, c *middleware.Claims) (bool, error) {
		tid, _ := c.StringClaim("tid")
		return tid == "contoso", nil
	}}
	account := &ruleFunc{name: "own-account", allow: func(r *http.Request, c *middleware.Claims) (bool, error) {
		return r.Header.Get("X-Account") == c.Subject, nil
	}}
	broken := &ruleFunc{name: "broken", allow: func(*http.Request, *middleware.Claims) (bool, error) {
		return true, errors.New("no such key: tier")
	}}
	var logs bytes.Buffer
	e := newEnvWith(t, func(c *middleware.Config) {
		c.Issuers[0].Rules = []middleware.Rule{tenant}
		c.Routes = append(c.Routes,
			middleware.Route{Match: "POST /payments", Scopes: []string{"payments:write"}, Rules: []middleware.Rule{account}},
			middleware.Route{Match: "/broken", Rules: []middleware.Rule{broken}},
			middleware.Route{Match: "/open", Public: true},
		)
	}, middleware.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	good := e.as.MustMint(jwkstest.Claims{"sub": "alice", "tid": "contoso", "scope": "orders:read payments:write"})
	other := e.as.MustMint(jwkstest.Claims{"sub": "alice", "tid": "fabrikam", "scope": "orders:read payments:write"})
	weak := e.as.MustMint(jwkstest.Claims{"sub": "alice", "tid": "contoso", "scope": "orders:read"})

	for _, tc := range []struct {
		name, method, target string
		headers              []string
		status               int
		reason, route        string
	}{
		{"issuer rule holds", "GET", "/orders/1", []string{bearer(good)}, 200, "ok", "GET /orders/{id}"},
		{"issuer rule false", "GET", "/orders/1", []string{bearer(other)}, 403, "rule", "GET /orders/{id}"},
		{"route rule holds", "POST", "/payments", []string{bearer(good), "X-Account: alice"}, 200, "ok", "POST /payments"},
		{"route rule false", "POST", "/payments", []string{bearer(good), "X-Account: bob"}, 403, "rule", "POST /payments"},
		{"scopes come first", "POST", "/payments", []string{bearer(weak), "X-Account: bob"}, 403, "insufficient_scope", "POST /payments"},
		{"an error denies", "GET", "/broken", []string{bearer(good)}, 403, "rule", "/broken"},
		{"public routes run no rules", "GET", "/open", []string{bearer(other)}, 200, "ok", "/open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.count(outcomeOf(tc.status), tc.reason, tc.route)
			w := e.do(tc.method, tc.target, tc.headers...)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.status, w.Body)
			}
			if got := e.count(outcomeOf(tc.status), tc.reason, tc.route) - before; got != 1 {
				t.Errorf("%s %s counted %v times", tc.reason, tc.route, got)
			}
			if tc.reason != "rule" {
				return
			}
			if got := w.Body.String(); got != `{"error":"access_denied","error_description":"a rule of this API does not allow the request"}`+"\n" {
				t.Errorf("body %q", got)
			}
			// RFC 6750 has no code for a refusal by policy: the challenge names none.
			if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="orders-api"` {
				t.Errorf("challenge %q", got)
			}
		})
	}
	if tenant.called() == 0 || account.called() == 0 || broken.called() == 0 {
		t.Error("a rule was never asked")
	}
	if !strings.Contains(logs.String(), "rule=own-account") || !strings.Contains(logs.String(), "rule=broken") {
		t.Errorf("the log lines do not name the rules:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), good) {
		t.Error("a token reached the log")
	}
	// The rule's name is never a label.
	if got := metricValue(e.reg, "tokengate_decisions_total", map[string]string{"rule": "tenant"}); got != 0 {
		t.Errorf("a series with a rule label: %v", got)
	}
}

func outcomeOf(status int) middleware.Outcome {
	if status == 200 {
		return middleware.DecisionAllowed
	}
	return middleware.DecisionDenied
}

func TestRuleErrorIs(t *testing.T) {
	f := &ruleFunc{name: "never", allow: func(*http.Request, *middleware.Claims) (bool, error) { return false, nil }}
	e := newEnv(t, func(c *middleware.Config) { c.Issuers[0].Rules = []middleware.Rule{f} })
	req, _ := http.NewRequest("GET", "/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}))
	d := e.gate.Decide(req)
	var me *middleware.Error
	if !errors.Is(d.Err, middleware.ErrRuleFailed) || !errors.As(d.Err, &me) || me.Rule != "never" {
		t.Fatalf("Decide's error %v does not name the rule", d.Err)
	}
	if !errors.Is(d.Err, middleware.ErrRuleIsFalse) || d.Err.Error() != `rule: rule "never" is false` {
		t.Errorf("a false rule's error %q does not say it was false", d.Err)
	}
	if d.Claims == nil {
		t.Error("a rule denial comes after verification: its claims belong in the Decision")
	}
}

func TestRuleShadow(t *testing.T) {
	f := &ruleFunc{name: "never", allow: func(*http.Request, *middleware.Claims) (bool, error) { return false, nil }}
	e := newEnv(t, func(c *middleware.Config) {
		c.Routes = []middleware.Route{{Match: "/try/", Shadow: true, Rules: []middleware.Rule{f}}}
	})
	tok := e.as.MustMint(jwkstest.Claims{})
	if w := e.do("GET", "/try/x", bearer(tok)); w.Code != 200 {
		t.Fatalf("a shadow route's false rule: %d", w.Code)
	}
	if e.count(middleware.DecisionShadowDenied, "rule", "/try/") != 1 {
		t.Error("not counted as shadow_denied rule")
	}
}

func TestRuleConfig(t *testing.T) {
	f := &ruleFunc{name: "", allow: func(*http.Request, *middleware.Claims) (bool, error) { return true, nil }}
	cfg := middleware.Config{
		Issuers: []middleware.Issuer{{Audiences: []string{"a"}, Rules: []middleware.Rule{nil}}},
		Routes: []middleware.Route{
			{Match: "/a", Public: true, Rules: []middleware.Rule{f}},
		},
	}
	cfg.Issuers[0].Issuer = "https://as.example"
	err := middleware.Validate(cfg)
	for _, want := range []string{"Issuers[0].Rules[0]: is nil", "Routes[0].Rules: a public route", "Routes[0].Rules[0]: has no name"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want %q", err, want)
		}
	}
}

func TestClaimsMap(t *testing.T) {
	var c middleware.Claims
	if err := c.UnmarshalJSON([]byte(`{"iss":"i","sub":"s","exp":2000000000,"groups":["a","b"],"n":3,"o":{"k":true}}`)); err != nil {
		t.Fatal(err)
	}
	m := c.Map()
	if m["sub"] != "s" || m["n"] != 3.0 || m["o"].(map[string]any)["k"] != true || len(m["groups"].([]any)) != 2 {
		t.Fatalf("Map = %#v", m)
	}
	m["sub"] = "changed by a caller that should not"
	if c.Map()["sub"] != "changed by a caller that should not" {
		t.Error("Map is not decoded once per Claims")
	}
	var wg sync.WaitGroup
	var fresh middleware.Claims
	_ = fresh.UnmarshalJSON([]byte(`{"a":1}`))
	for range 8 {
		wg.Go(func() {
			if fresh.Map()["a"] != 1.0 {
				t.Error("a concurrent Map differs")
			}
		})
	}
	wg.Wait()
}
