package rules

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/cel-go/cel"

	"github.com/tokengate/tokengate/middleware"
)

// fuzzRules are the rules FuzzEval evaluates: every shape the package's tests use.
var fuzzRules = []Spec{
	{Name: "tenant", Expr: `claims.tid == "contoso"`},
	{Name: "present", Expr: `has(claims.tid) && has(claims.nested.a)`},
	{Name: "group", Expr: `"admins" in claims.groups`},
	{Name: "groups", Expr: `claims.groups.exists(g, g in ["admins", "owners"])`},
	{Name: "prefix", Expr: `claims.groups.all(g, g.startsWith("team-"))`},
	{Name: "sets", Expr: `sets.intersects(claims.groups, ["admins"])`},
	{Name: "header", Expr: `request.headers["x-tenant"] == claims.tid`},
	{Name: "header-list", Expr: `claims.tid in request.headers["x-tenant"].split(",")`},
	{Name: "header-walk", Expr: `request.headers.exists(k, k.startsWith("x-"))`},
	{Name: "path", Expr: `request.method == "GET" && request.path.matches("^/orders/[0-9]+$")`},
	{Name: "age", Expr: `claims.age >= 18 && int(claims.age) < 200`},
	{Name: "nested", Expr: `claims.nested.a.b[0] == 1.0`},
	{Name: "equal", Expr: `claims.nested == claims.groups`},
	{Name: "all-claims", Expr: `claims.exists(k, k.startsWith("x") && claims[k] == true) || size(claims) > 10`},
	{Name: "strings", Expr: `string(claims.sub).lowerAscii().endsWith("@contoso.com")`},
	{Name: "join", Expr: `claims.groups.join(",").size() < 100`},
	{Name: "time", Expr: `timestamp(int(claims.iat)) < timestamp("2030-01-01T00:00:00Z")`},
	{Name: "scope", Expr: `"orders:read" in claims.scope.split(" ")`},
	{Name: "dyn-selects", Expr: `claims.groups.exists(g, g.a.b == 1) || claims.nested.a.b.c == "x"`},
	{Name: "maps", Expr: `claims.nested.exists(k, claims.nested[k] == 1) && claims.nested.all(k, k.size() < 3)`},
	{Name: "filter", Expr: `claims.groups.filter(g, g != "").map(g, g + "!").size() > 1`},
	{Name: "host", Expr: `request.host.endsWith(".example.com") && request.headers.size() < 5`},
}

// FuzzEval evaluates fixed rules on hostile claims (any payload the Gate's strict
// decoding accepts), a hostile header value and path: no evaluation may panic, every
// one must be deterministic, and none may cost more than the load-time estimate for
// inputs of its size, which is what keeps the cost limit (see compiled.eval).
func FuzzEval(f *testing.F) {
	for _, seed := range []struct{ payload, header, path string }{
		{`{"tid":"contoso","groups":["admins","team-a"],"age":18,"sub":"Alice@Contoso.com","iat":1700000000,"scope":"orders:read"}`, "contoso", "/orders/1"},
		{`{}`, "", "/"},
		{`{"tid":7,"groups":"admins","age":"18","nested":[1],"sub":null}`, "a,b,contoso", "/orders/x"},
		{`{"nested":{"a":{"b":[1,2,{"c":[]}]}},"groups":[["admins"],{"admins":true}],"x1":true}`, "\x00\r\n", "/%2e%2e/"},
		{`{"groups":[` + `"a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p"` + `],"age":1e308,"iat":-1}`, "x,y,z", "/orders/99999999999999999999"},
		{`{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":[[[[[[[[]]]]]]]]}}}}}}}}`, "é", "/ü"},
		{`{"tid":"contoso","groups":[],"age":17.999,"iat":1e11,"scope":["orders:read"]}`, ",,,,", ""},
	} {
		f.Add([]byte(seed.payload), seed.header, seed.path)
	}
	compiled := make([]*compiled, len(fuzzRules))
	tracked := make([]cel.Program, len(fuzzRules))
	s := newSettings([]Option{WithCostLimit(10_000_000)})
	e, err := env()
	if err != nil {
		f.Fatal(err)
	}
	for i, spec := range fuzzRules {
		c, errs := compile(i, spec, cel.BoolType, s)
		if len(errs) > 0 {
			f.Fatalf("%s: %v", spec.Name, errs)
		}
		compiled[i] = c
		if tracked[i], err = e.Program(c.checked, cel.EvalOptions(cel.OptOptimize, cel.OptTrackCost)); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte, header, path string) {
		var c1, c2 middleware.Claims
		if json.Unmarshal(payload, &c1) != nil || json.Unmarshal(payload, &c2) != nil {
			return // the Gate refuses it before any rule
		}
		r := &http.Request{
			Method: "GET",
			URL:    &url.URL{Path: path},
			Host:   "orders.example.com",
			Header: http.Header{"X-Tenant": {header}, "X-Other": {header, "b"}, "Accept": {"*/*"}},
		}
		for i, p := range compiled {
			rule := &Rule{p}
			ok1, err1 := rule.Allow(r, &c1)
			ok2, err2 := rule.Allow(r, &c1) // the memoized claims
			ok3, err3 := rule.Allow(r, &c2) // decoded again
			if ok1 != ok2 || ok1 != ok3 || (err1 == nil) != (err2 == nil) || (err1 == nil) != (err3 == nil) {
				t.Fatalf("%s: not deterministic: %v %v, %v %v, %v %v", p.name, ok1, err1, ok2, err2, ok3, err3)
			}
			if ok1 && err1 != nil {
				t.Fatalf("%s: true with an error: %v", p.name, err1)
			}
			// The actual cost, as cel-go's tracker counts it, is within the estimate
			// for inputs of this size.
			cs, rs := p.claimsSize(&c1), p.requestSize(r)
			bound, err := p.estimate(cs, rs)
			if err != nil {
				t.Fatal(err)
			}
			_, det, _ := tracked[i].Eval(newActivation(r, claimsMap(&c1)))
			if det == nil || det.ActualCost() == nil {
				t.Fatalf("%s: no cost tracked", p.name)
			}
			if got := *det.ActualCost(); got > bound {
				t.Fatalf("%s: cost %d over the bound %d for claims of %d bytes and a request of %d", p.name, got, bound, cs, rs)
			}
		}
	})
}
