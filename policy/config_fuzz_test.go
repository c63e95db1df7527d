package policy_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/joined"
	"github.com/tokengate/tokengate/policy"
)

// FuzzConfigFile feeds the configuration loader arbitrary bytes. What must hold: it
// never panics; it returns a configuration or an error, never both or neither; a
// configuration loads the same way twice; every problem is a *policy.Problem that
// names the file; and no problem echoes more than a bounded part of the input (a
// configuration may come from a ConfigMap that a log pipeline ships elsewhere).
func FuzzConfigFile(f *testing.F) {
	valid := `upstream: "http://127.0.0.1:8080"
issuers:
  - issuer: "https://auth.example.com/realms/shop"
    audiences: ["https://orders.example.com"]
    tokenType: at+jwt
    refresh: {min: 1m, max: 1h}
tokens:
  leeway: 30s
routes:
  - match: "GET /healthz"
    public: true
  - match: "GET /orders/{id}"
    scopes: [orders:read]
  - match: "POST /orders"
    anyScopes: [orders:write, orders:admin]
forward:
  claims: {sub: X-Auth-Subject}
`
	for _, s := range []string{
		valid,
		strings.Replace(valid, "audiences", "audience", 1),
		strings.Replace(valid, "upstream:", "upstream: x\nupstream:", 1),
		valid + "routes: []\n",
		"",
		"---\n",
		"[1, 2]",
		"issuers: {a: b}",
		"upstream: &a [*a]",
		// A billion laughs: aliases that expand exponentially.
		"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
		"routes:\n  - match: \"GET /{a}/{a}\"\n",
		"tokens: {maxBytes: -1, leeway: 99999h}\n",
		"\xff\xfe",
		"issuers:\n  - issuer: " + strings.Repeat("x", 5000) + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := policy.Load("tokengate.yaml", data, policy.ForProxy, policy.Overrides{})
		if (l == nil) == (err == nil) {
			t.Fatalf("configuration %v and error %v", l != nil, err)
		}
		if err == nil {
			again, err := policy.Load("tokengate.yaml", data, policy.ForProxy, policy.Overrides{})
			if err != nil || !reflect.DeepEqual(l.File, again.File) {
				t.Fatalf("loaded twice, differently: %v", err)
			}
			return
		}
		for _, e := range joined.Flatten(err) {
			var p *policy.Problem
			if !errors.As(e, &p) {
				t.Fatalf("a problem that is not a *policy.Problem: %T %v", e, e)
			}
			if p.Path != "tokengate.yaml" {
				t.Fatalf("a problem that does not name the file: %v", e)
			}
			if n := len(e.Error()); n > 1024 {
				t.Fatalf("a problem of %d bytes: %.200q…", n, e.Error())
			}
		}
	})
}
