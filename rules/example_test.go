package rules_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"

	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/rules"
)

func ExampleCompile() {
	rs, err := rules.Compile([]rules.Spec{
		{Name: "tenant", Expr: `claims.tid == "contoso"`},
		{Name: "own-account", Expr: `request.headers["x-account"] == claims.sub`},
		{Name: "admins-write", Expr: `request.method in ["GET", "HEAD"] || "admins" in claims.groups`},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// In a Gate: middleware.Issuer{..., Rules: rs}. Here, by hand:
	var claims middleware.Claims
	_ = json.Unmarshal([]byte(`{"sub": "alice", "tid": "contoso", "groups": ["users"]}`), &claims)
	for _, req := range []struct{ method, account string }{{"GET", "alice"}, {"GET", "bob"}, {"POST", "alice"}} {
		r := httptest.NewRequest(req.method, "/accounts/1", nil)
		r.Header.Set("X-Account", req.account)
		for _, rule := range rs {
			if ok, err := rule.Allow(r, &claims); !ok {
				fmt.Printf("%s as %s: denied by %s (%v)\n", req.method, req.account, rule.Name(), err)
				break
			}
		}
	}
	// Output:
	// GET as bob: denied by own-account (<nil>)
	// POST as alice: denied by admins-write (<nil>)
}

func ExampleCompile_errors() {
	_, err := rules.Compile([]rules.Spec{
		{Name: "tenant", Expr: `claims.tid = "contoso"`},
		{Name: "admin", Expr: `claims.admin`},
		{Name: "tenant", Expr: `request.headers["X-Tenant"] == claims.tid`},
	})
	fmt.Println(err)
	var re *rules.Error
	if errors.As(err, &re) {
		fmt.Printf("first: rules[%d].%s, line %d column %d\n", re.Index, re.Field, re.Line, re.Column)
	}
	// Output:
	// rule 0 "tenant": expr: 1:12: syntax error: token recognition error at: '= '
	// rule 1 "admin": expr: type error: the expression is of type dyn, not bool (a claim's type is known only at evaluation: compare it, as in claims.admin == true)
	// rule 2 "tenant": name: duplicate rule name: rule 0 has this name too
	// rule 2 "tenant": expr: 1:16: type error: request.headers has lower-case names: "X-Tenant" is never there; write "x-tenant"
	// first: rules[0].expr, line 1 column 12
}

func ExampleCompile_missingClaims() {
	rs, _ := rules.Compile([]rules.Spec{
		{Name: "strict", Expr: `claims.tier == "gold"`},
		{Name: "lenient", Expr: `!has(claims.tier) || claims.tier == "gold"`},
	})
	var claims middleware.Claims
	_ = json.Unmarshal([]byte(`{"sub": "alice"}`), &claims)
	for _, rule := range rs {
		ok, err := rule.Allow(httptest.NewRequest("GET", "/", nil), &claims)
		fmt.Println(rule.Name(), ok, err)
	}
	// Output:
	// strict false no such key: tier
	// lenient true <nil>
}

func ExampleCompileValue() {
	v, err := rules.CompileValue(rules.Spec{Name: "X-Auth-Groups", Expr: `claims.groups.join(",")`})
	if err != nil {
		fmt.Println(err)
		return
	}
	var claims middleware.Claims
	_ = json.Unmarshal([]byte(`{"groups": ["admins", "team-orders"]}`), &claims)
	groups, err := v.Eval(httptest.NewRequest("GET", "/", nil), &claims)
	fmt.Println(v.Name()+":", groups, err)
	// Output:
	// X-Auth-Groups: admins,team-orders <nil>
}

func ExampleClaimsUsed() {
	rs, _ := rules.Compile([]rules.Spec{
		{Name: "tenant", Expr: `claims.tid == "contoso"`},
		{Name: "own-account", Expr: `request.headers["x-account"] == claims.sub`},
	})
	// A Gate whose cache keeps only some claims must keep these too.
	names, all := rules.ClaimsUsed(rs...)
	fmt.Println(names, all)
	// Output:
	// [sub tid] false
}
