package policy_test

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/policy"
)

func TestRulesLoad(t *testing.T) {
	file := `upstream: http://127.0.0.1:8080
issuers:
  - issuer: https://auth.example.com
    audiences: [https://orders.example.com]
    rules:
      - name: tenant
        expr: 'claims.tid == "contoso"'
routes:
  - match: POST /payments
    rules:
      - {name: own-account, expr: 'request.headers["x-account"] == claims.acct'}
`
	l, err := policy.Load("t.yaml", []byte(file), policy.ForProxy, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Gate.Issuers[0].Rules) != 1 || l.Gate.Issuers[0].Rules[0].Name() != "tenant" || len(l.Gate.Routes[0].Rules) != 1 {
		t.Fatalf("rules not compiled into the Gate's configuration: %+v", l.Gate)
	}
	// The cache keeps what the rules read, besides what forward.claims names.
	for _, c := range []string{"tid", "acct", "sub", "client_id"} {
		if !slices.Contains(l.Gate.Tokens.KeepClaims, c) {
			t.Errorf("KeepClaims %v lacks %s", l.Gate.Tokens.KeepClaims, c)
		}
	}
	// The compiled rule answers.
	r := httptest.NewRequest("POST", "/payments", nil)
	r.Header.Set("X-Account", "a1")
	var c middleware.Claims
	if err := c.UnmarshalJSON([]byte(`{"acct":"a1","tid":"contoso"}`)); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Gate.Routes[0].Rules[0].Allow(r, &c); !ok || err != nil {
		t.Errorf("own-account: %v %v", ok, err)
	}

	// A rule over every claim keeps them all.
	all := strings.Replace(file, `'claims.tid == "contoso"'`, `'claims.exists(k, k == "x")'`, 1)
	l, err = policy.Load("t.yaml", []byte(all), policy.ForProxy, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Gate.Tokens.KeepClaims != nil {
		t.Errorf("a rule that iterates over claims, KeepClaims %v: want nil (every claim)", l.Gate.Tokens.KeepClaims)
	}
}

func TestRulesProblems(t *testing.T) {
	file := `upstream: http://127.0.0.1:8080
issuers:
  - issuer: https://auth.example.com
    audiences: [https://orders.example.com]
    rules:
      - name: tenant
        expr: 'claims.tid =='
      - name: tenant
        expr: '"a"'
routes:
  - match: /
    rules:
      - {name: "bad name!", expr: 'true'}
  - match: /open
    public: true
    rules: [{name: x, expr: 'true'}]
`
	_, err := policy.Load("t.yaml", []byte(file), policy.ForProxy, policy.Overrides{})
	if err == nil {
		t.Fatal("no problem reported")
	}
	for _, want := range []string{
		"t.yaml:7: issuers[0].rules[0].expr: at 1:",
		"t.yaml:8: issuers[0].rules[1].name:",
		"t.yaml:9: issuers[0].rules[1].expr:",
		"t.yaml:13: routes[0].rules[0].name:",
		"t.yaml:16: routes[1].rules: a public route",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
