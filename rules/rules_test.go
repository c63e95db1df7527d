package rules_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/rules"
)

// claimsOf decodes a payload the way the Gate does (Claims' strict UnmarshalJSON).
func claimsOf(t testing.TB, payload string) *middleware.Claims {
	t.Helper()
	var c middleware.Claims
	if err := json.Unmarshal([]byte(payload), &c); err != nil {
		t.Fatalf("claims %s: %v", payload, err)
	}
	return &c
}

// request builds a request with header lines given as "Name: value".
func request(method, target string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ": ")
		r.Header.Add(name, value)
	}
	return r
}

func compileOne(t testing.TB, expr string, opts ...rules.Option) middleware.Rule {
	t.Helper()
	rs, err := rules.Compile([]rules.Spec{{Name: "r", Expr: expr}}, opts...)
	if err != nil {
		t.Fatalf("Compile(%s): %v", expr, err)
	}
	return rs[0]
}

const alice = `{
	"iss": "https://auth.example.com", "sub": "alice", "aud": "https://orders.example.com",
	"exp": 1800000000, "iat": 1700000000, "scope": "orders:read orders:write",
	"tid": "contoso", "email": "Alice@Contoso.com", "email_verified": true,
	"groups": ["admins", "team-orders"], "age": 18, "height": 1.75, "level": 3,
	"nested": {"a": {"b": [1, 2, {"c": "deep"}]}}, "nothing": null, "empty": [],
	"roles": {"orders": ["reader", "writer"]}
}`

func TestAllow(t *testing.T) {
	c := claimsOf(t, alice)
	get := request("GET", "https://orders.example.com/orders/42?x=1", "X-Tenant: contoso", "X-Account: alice")
	for _, tc := range []struct {
		name, expr string
		r          *http.Request // default get
		opts       []rules.Option
		want       bool
		wantErr    bool
	}{
		// Claim equality.
		{name: "claim equals", expr: `claims.tid == "contoso"`, want: true},
		{name: "claim differs", expr: `claims.tid == "fabrikam"`, want: false},
		{name: "claim by index", expr: `claims["tid"] == "contoso"`, want: true},
		{name: "claim not equals", expr: `claims.sub != "bob"`, want: true},
		{name: "bool claim", expr: `claims.email_verified == true`, want: true},
		{name: "bool claim negated", expr: `!claims.email_verified`, want: false},
		{name: "null claim", expr: `claims.nothing == null`, want: true},
		{name: "nested claim", expr: `claims.nested.a.b[2].c == "deep"`, want: true},
		{name: "registered claim", expr: `claims.iss == "https://auth.example.com" && claims.aud == "https://orders.example.com"`, want: true},
		{name: "claim of another type is not equal", expr: `claims.age == "18"`, want: false},

		// Presence.
		{name: "has present", expr: `has(claims.tid)`, want: true},
		{name: "has absent", expr: `has(claims.tier)`, want: false},
		{name: "has guards a missing claim", expr: `has(claims.tier) && claims.tier == "gold"`, want: false},
		{name: "absent or", expr: `!has(claims.act) || claims.act.sub == "svc"`, want: true},
		{name: "has nested", expr: `has(claims.nested.a) && !has(claims.nested.z)`, want: true},
		{name: "has null counts as present", expr: `has(claims.nothing)`, want: true},
		{name: "in on the claims", expr: `"tid" in claims && !("tier" in claims)`, want: true},

		// Missing claims: an error, which denies.
		{name: "missing claim", expr: `claims.tier == "gold"`, wantErr: true},
		{name: "missing claim negated", expr: `claims.tier != "gold"`, wantErr: true},
		{name: "missing nested claim", expr: `claims.nested.z.y == 1`, wantErr: true},
		{name: "select on a string", expr: `claims.tid.x == 1`, wantErr: true},
		{name: "missing claim in a list", expr: `"admins" in claims.teams`, wantErr: true},
		{name: "index past the end", expr: `claims.groups[5] == "x"`, wantErr: true},

		// Lists: group membership.
		{name: "group member", expr: `"admins" in claims.groups`, want: true},
		{name: "not a group member", expr: `"auditors" in claims.groups`, want: false},
		{name: "one of several groups", expr: `claims.groups.exists(g, g in ["auditors", "admins"])`, want: true},
		{name: "groups intersect", expr: `sets.intersects(claims.groups, ["auditors", "admins"])`, want: true},
		{name: "all groups", expr: `sets.contains(claims.groups, ["admins", "team-orders"])`, want: true},
		{name: "group prefix", expr: `claims.groups.exists(g, g.startsWith("team-"))`, want: true},
		{name: "every group", expr: `claims.groups.all(g, g.size() < 20)`, want: true},
		{name: "exactly one", expr: `claims.groups.exists_one(g, g.startsWith("team-"))`, want: true},
		{name: "list size", expr: `size(claims.groups) == 2 && size(claims.empty) == 0`, want: true},
		{name: "in an empty list", expr: `"admins" in claims.empty`, want: false},
		{name: "map of lists", expr: `"writer" in claims.roles.orders`, want: true},
		{name: "in a string is an error", expr: `"con" in claims.tid`, wantErr: true},
		{name: "scope split", expr: `"orders:write" in claims.scope.split(" ")`, want: true},

		// Headers.
		{name: "header equals claim", expr: `request.headers["x-tenant"] == claims.tid`, want: true},
		{name: "header equals other claim", expr: `request.headers["x-account"] == claims.sub`, want: true},
		{name: "header differs", r: request("GET", "/orders/1", "X-Tenant: fabrikam"), expr: `request.headers["x-tenant"] == claims.tid`, want: false},
		{name: "header missing", r: request("GET", "/orders/1"), expr: `request.headers["x-tenant"] == claims.tid`, wantErr: true},
		{name: "header presence", expr: `"x-tenant" in request.headers && !("x-other" in request.headers)`, want: true},
		{name: "header guarded", r: request("GET", "/"), expr: `!("x-tenant" in request.headers) || request.headers["x-tenant"] == claims.tid`, want: true},
		{name: "header sent twice", r: request("GET", "/", "X-Tenant: contoso", "X-Tenant: fabrikam"), expr: `request.headers["x-tenant"] == "contoso, fabrikam"`, want: true},
		{name: "header sent twice is not a single value", r: request("GET", "/", "X-Tenant: contoso", "X-Tenant: fabrikam"), expr: `request.headers["x-tenant"] == claims.tid`, want: false},
		{name: "header list", r: request("GET", "/", "X-Tenants: fabrikam,contoso"), expr: `claims.tid in request.headers["x-tenants"].split(",")`,
			opts: []rules.Option{rules.WithRequestBytes(16 << 10)}, want: true},
		{name: "header iteration", expr: `request.headers.exists(k, k == "x-tenant")`, want: true},
		{name: "header names are lower case", expr: `request.headers.all(k, k == k.lowerAscii())`,
			opts: []rules.Option{rules.WithCostLimit(1 << 40)}, want: true},
		{name: "header size", r: request("GET", "/", "A: 1", "B: 2", "B: 3"), expr: `size(request.headers) == 2`, want: true},
		{name: "header map equality", r: request("GET", "/", "X-Tenant: contoso"), expr: `request.headers == {"x-tenant": "contoso"}`, want: true},
		{name: "header empty value", r: request("GET", "/", "X-Empty: "), expr: `request.headers["x-empty"] == ""`, want: true},
		{name: "host", expr: `request.host == "orders.example.com"`, want: true},

		// Method and path.
		{name: "method", expr: `request.method == "GET"`, want: true},
		{name: "method in", r: request("DELETE", "/orders/1"), expr: `request.method in ["GET", "HEAD"]`, want: false},
		{name: "odd method", r: request("PROPFIND", "/orders/1"), expr: `request.method == "PROPFIND"`, want: true},
		{name: "path prefix", expr: `request.path.startsWith("/orders/")`, want: true},
		{name: "path has no query", expr: `request.path == "/orders/42"`, want: true},
		{name: "path is decoded", r: request("GET", "/orders/a%20b"), expr: `request.path == "/orders/a b"`, want: true},
		{name: "path matches", expr: `request.path.matches("^/orders/[0-9]+$")`, want: true},
		{name: "writes need admins", r: request("POST", "/orders"), expr: `request.method == "GET" || "admins" in claims.groups`, want: true},
		{name: "dyn request", expr: `dyn(request).method == "GET"`, want: true},

		// Strings.
		{name: "endsWith", expr: `claims.email.endsWith("@Contoso.com")`, want: true},
		{name: "lowerAscii", expr: `claims.email.lowerAscii().endsWith("@contoso.com")`, want: true},
		{name: "contains", expr: `claims.email.contains("@")`, want: true},
		{name: "matches", expr: `claims.email.matches("(?i)^[a-z]+@contoso[.]com$")`, want: true},
		{name: "size of a string", expr: `claims.tid.size() == 7`, want: true},
		{name: "join", expr: `claims.groups.join(",") == "admins,team-orders"`, want: true},
		{name: "string of a number", expr: `string(claims.level) == "3"`, want: true},
		{name: "startsWith on a number", expr: `claims.age.startsWith("1")`, wantErr: true},

		// Numbers: JSON numbers are doubles.
		{name: "age at least", expr: `claims.age >= 18`, want: true},
		{name: "age over", expr: `claims.age > 18`, want: false},
		{name: "age equals int", expr: `claims.age == 18`, want: true},
		{name: "age equals double", expr: `claims.age == 18.0`, want: true},
		{name: "fraction", expr: `claims.height > 1.5 && claims.height < 2`, want: true},
		{name: "int conversion", expr: `int(claims.level) == 3`, want: true},
		{name: "arithmetic", expr: `claims.level * 2.0 == 6.0`, want: true},
		{name: "string is not a number", expr: `claims.tid >= 18`, wantErr: true},
		{name: "null is not a number", expr: `claims.nothing >= 18`, wantErr: true},

		// Time: exp, iat and nbf are seconds since the epoch.
		{name: "issued after", expr: `claims.iat > 1600000000`, want: true},
		{name: "timestamp", expr: `timestamp(int(claims.iat)) > timestamp("2023-01-01T00:00:00Z")`, want: true},
		{name: "lifetime", expr: `duration(string(int(claims.exp - claims.iat)) + "s") <= duration("8760h")`, want: false},
		{name: "timestamp of a fraction", expr: `timestamp(int(claims.height)) == timestamp("1970-01-01T00:00:01Z")`, want: true},

		// Logic.
		{name: "and", expr: `claims.tid == "contoso" && request.method == "GET"`, want: true},
		{name: "false and error is false", expr: `claims.tid == "fabrikam" && claims.tier == "gold"`, want: false},
		{name: "true or error is true", expr: `claims.tid == "contoso" || claims.tier == "gold"`, want: true},
		{name: "conditional", expr: `request.method == "GET" ? true : "admins" in claims.groups`, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rule := compileOne(t, tc.expr, tc.opts...)
			r := tc.r
			if r == nil {
				r = get
			}
			got, err := rule.Allow(r, c)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Allow = %v, nil; want an error", got)
				}
				if got {
					t.Fatal("Allow = true with an error")
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Allow = %v, %v; want %v, nil", got, err, tc.want)
			}
		})
	}
}

func TestHeaderNamesSetByHandlers(t *testing.T) {
	// A handler before the Gate may set keys net/http would have canonicalized: every
	// key that lower-cases to a name counts, in the order of the keys.
	r := request("GET", "/")
	r.Header = http.Header{"X-Tenant": {"b"}, "x-tenant": {"a"}, "x-TENANT": {"c", "d"}, "Other": {"o"}}
	for _, tc := range []struct{ expr string }{
		{`request.headers["x-tenant"] == "b, c, d, a"`},
		{`size(request.headers) == 2`},
		{`request.headers == {"x-tenant": "b, c, d, a", "other": "o"}`},
		{`request.headers.exists(k, k == "x-tenant" && request.headers[k] == "b, c, d, a")`}, // under a higher limit
		// The third look-up reads the map built once.
		{`request.headers["other"] == "o" && request.headers["other"] == "o" && request.headers["other"] == "o" && request.headers["x-tenant"] == "b, c, d, a"`},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			for range 3 { // the same answer whatever the map's order
				if ok, err := compileOne(t, tc.expr, rules.WithCostLimit(1<<20)).Allow(r, claimsOf(t, `{}`)); !ok || err != nil {
					t.Fatalf("Allow = %v, %v", ok, err)
				}
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	long := "claims.tid == \"" + strings.Repeat("a", rules.MaxExprLength) + "\""
	deep := strings.Repeat("(", 40) + "true" + strings.Repeat(")", 40)
	for _, tc := range []struct {
		name  string
		specs []rules.Spec
		opts  []rules.Option
		want  []rules.Error // Err is matched with errors.Is
		text  string        // a part of the message
	}{
		{
			name:  "syntax error",
			specs: []rules.Spec{{Name: "ok", Expr: "true"}, {Name: "tenant", Expr: `claims.tid == `}},
			want:  []rules.Error{{Index: 1, Name: "tenant", Field: "expr", Line: 1, Column: 15, Err: rules.ErrSyntax}},
			text:  `rule 1 "tenant": expr: 1:15: syntax error: mismatched input '<EOF>'`,
		},
		{
			name:  "syntax error on a later line",
			specs: []rules.Spec{{Name: "tenant", Expr: "claims.tid == \"contoso\" &&\n  claims.sub == = \"x\""}},
			want:  []rules.Error{{Index: 0, Name: "tenant", Field: "expr", Line: 2, Column: 17, Err: rules.ErrSyntax}},
		},
		{
			name:  "unknown variable",
			specs: []rules.Spec{{Name: "tenant", Expr: `tenant == "contoso"`}},
			want:  []rules.Error{{Index: 0, Name: "tenant", Field: "expr", Line: 1, Column: 1, Err: rules.ErrType}},
			text:  `rule 0 "tenant": expr: 1:1: type error: undeclared reference to 'tenant'`,
		},
		{
			name:  "unknown request field",
			specs: []rules.Spec{{Name: "m", Expr: `request.mehtod == "GET"`}},
			want:  []rules.Error{{Index: 0, Name: "m", Field: "expr", Line: 1, Column: 8, Err: rules.ErrType}},
			text:  "undefined field 'mehtod'",
		},
		{
			name:  "unknown function",
			specs: []rules.Spec{{Name: "f", Expr: `claims.tid.shout() == "X"`}},
			want:  []rules.Error{{Index: 0, Name: "f", Field: "expr", Line: 1, Column: 17, Err: rules.ErrType}},
		},
		{
			name:  "wrong argument types",
			specs: []rules.Spec{{Name: "f", Expr: `request.method.startsWith(1)`}},
			want:  []rules.Error{{Index: 0, Name: "f", Field: "expr", Line: 1, Column: 26, Err: rules.ErrType}},
		},
		{
			name:  "string result",
			specs: []rules.Spec{{Name: "s", Expr: `request.method`}},
			want:  []rules.Error{{Index: 0, Name: "s", Field: "expr", Err: rules.ErrType}},
			text:  "the expression is of type string, not bool",
		},
		{
			name:  "dyn result",
			specs: []rules.Spec{{Name: "admin", Expr: `claims.admin`}},
			want:  []rules.Error{{Index: 0, Name: "admin", Field: "expr", Err: rules.ErrType}},
			text:  "claims.admin == true",
		},
		{
			name:  "int result",
			specs: []rules.Spec{{Name: "n", Expr: `1 + 1`}},
			want:  []rules.Error{{Index: 0, Name: "n", Field: "expr", Err: rules.ErrType}},
		},
		{
			name:  "upper-case header name",
			specs: []rules.Spec{{Name: "h", Expr: `request.headers["X-Tenant"] == claims.tid`}},
			want:  []rules.Error{{Index: 0, Name: "h", Field: "expr", Line: 1, Column: 16, Err: rules.ErrType}},
			text:  `"X-Tenant" is never there; write "x-tenant"`,
		},
		{
			name:  "upper-case header name in",
			specs: []rules.Spec{{Name: "h", Expr: `"X-Tenant" in request.headers`}},
			want:  []rules.Error{{Index: 0, Name: "h", Field: "expr", Line: 1, Column: 12, Err: rules.ErrType}},
		},
		{
			name:  "bad regular expression",
			specs: []rules.Spec{{Name: "re", Expr: `request.path.matches("[")`}},
			want:  []rules.Error{{Index: 0, Name: "re", Field: "expr", Line: 1, Column: 22, Err: rules.ErrType}},
		},
		{
			name:  "bad timestamp literal",
			specs: []rules.Spec{{Name: "ts", Expr: `timestamp(int(claims.iat)) > timestamp("yesterday")`}},
			want:  []rules.Error{{Index: 0, Name: "ts", Field: "expr", Line: 1, Column: 40, Err: rules.ErrType}},
		},
		{
			name:  "mixed list literal",
			specs: []rules.Spec{{Name: "l", Expr: `claims.tid in ["a", 1]`}},
			want:  []rules.Error{{Index: 0, Name: "l", Field: "expr", Line: 1, Column: 21, Err: rules.ErrType}},
		},
		{
			name:  "empty expression",
			specs: []rules.Spec{{Name: "e", Expr: "  "}},
			want:  []rules.Error{{Index: 0, Name: "e", Field: "expr", Err: rules.ErrSyntax}},
		},
		{
			name:  "too long",
			specs: []rules.Spec{{Name: "long", Expr: long}},
			want:  []rules.Error{{Index: 0, Name: "long", Field: "expr", Err: rules.ErrSyntax}},
			text:  "expression code point size exceeds limit",
		},
		{
			name:  "too deep",
			specs: []rules.Spec{{Name: "deep", Expr: deep}},
			want:  []rules.Error{{Index: 0, Name: "deep", Field: "expr", Err: rules.ErrSyntax}},
			text:  "recursion limit exceeded",
		},
		{
			name:  "empty name",
			specs: []rules.Spec{{Name: "", Expr: "true"}},
			want:  []rules.Error{{Index: 0, Name: "", Field: "name", Err: rules.ErrName}},
			text:  `rule 0 "": name: invalid rule name: is empty`,
		},
		{
			name:  "name with a space",
			specs: []rules.Spec{{Name: "own account", Expr: "true"}},
			want:  []rules.Error{{Index: 0, Name: "own account", Field: "name", Err: rules.ErrName}},
		},
		{
			name:  "name with a newline",
			specs: []rules.Spec{{Name: "a\nlevel=ERROR", Expr: "true"}},
			want:  []rules.Error{{Index: 0, Name: "a\nlevel=ERROR", Field: "name", Err: rules.ErrName}},
		},
		{
			name:  "name too long",
			specs: []rules.Spec{{Name: strings.Repeat("n", rules.MaxNameLength+1), Expr: "true"}},
			want:  []rules.Error{{Index: 0, Name: strings.Repeat("n", rules.MaxNameLength+1), Field: "name", Err: rules.ErrName}},
		},
		{
			name:  "duplicate names",
			specs: []rules.Spec{{Name: "tenant", Expr: "true"}, {Name: "other", Expr: "true"}, {Name: "tenant", Expr: "false"}},
			want:  []rules.Error{{Index: 2, Name: "tenant", Field: "name", Err: rules.ErrDuplicateName}},
			text:  `rule 2 "tenant": name: duplicate rule name: rule 0 has this name too`,
		},
		{
			name:  "cost of a nested comprehension",
			specs: []rules.Spec{{Name: "pairs", Expr: `claims.groups.all(g, claims.groups.all(h, g == h))`}},
			want:  []rules.Error{{Index: 0, Name: "pairs", Field: "expr", Err: rules.ErrCostLimit}},
			text:  "over the limit of 100000",
		},
		{
			name:  "cost of a walk over the header",
			specs: []rules.Spec{{Name: "walk", Expr: `request.headers.all(k, request.headers[k].size() < 100)`}},
			want:  []rules.Error{{Index: 0, Name: "walk", Field: "expr", Err: rules.ErrCostLimit}},
		},
		{
			name:  "cost under a lower limit",
			specs: []rules.Spec{{Name: "groups", Expr: `claims.groups.exists(g, g.startsWith("team-"))`}},
			opts:  []rules.Option{rules.WithCostLimit(1000)},
			want:  []rules.Error{{Index: 0, Name: "groups", Field: "expr", Err: rules.ErrCostLimit}},
		},
		{
			name:  "cost with larger claims",
			specs: []rules.Spec{{Name: "groups", Expr: `claims.groups.exists(g, g in ["a", "b", "c"])`}},
			opts:  []rules.Option{rules.WithClaimsBytes(64 << 10)},
			want:  []rules.Error{{Index: 0, Name: "groups", Field: "expr", Err: rules.ErrCostLimit}},
		},
		{
			name: "every problem at once",
			specs: []rules.Spec{
				{Name: "", Expr: "true"},
				{Name: "ok", Expr: `claims.tid == "contoso"`},
				{Name: "ok", Expr: `claims.tid ==`},
				{Name: "bad name", Expr: `x`},
			},
			want: []rules.Error{
				{Index: 0, Name: "", Field: "name", Err: rules.ErrName},
				{Index: 2, Name: "ok", Field: "name", Err: rules.ErrDuplicateName},
				{Index: 2, Name: "ok", Field: "expr", Line: 1, Column: 14, Err: rules.ErrSyntax},
				{Index: 3, Name: "bad name", Field: "name", Err: rules.ErrName},
				{Index: 3, Name: "bad name", Field: "expr", Line: 1, Column: 1, Err: rules.ErrType},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := rules.Compile(tc.specs, tc.opts...)
			if err == nil {
				t.Fatalf("Compile = %d rules, nil; want an error", len(rs))
			}
			if rs != nil {
				t.Errorf("Compile returned rules with an error")
			}
			got := errorsOf(err)
			if len(got) != len(tc.want) {
				t.Fatalf("Compile: %d errors, want %d:\n%v", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Index != w.Index || g.Name != w.Name || g.Field != w.Field || g.Line != w.Line || g.Column != w.Column || !errors.Is(g, w.Err) {
					t.Errorf("error %d = {Index:%d Name:%q Field:%s Line:%d Column:%d} %v;\nwant {Index:%d Name:%q Field:%s Line:%d Column:%d} %v",
						i, g.Index, g.Name, g.Field, g.Line, g.Column, g.Err, w.Index, w.Name, w.Field, w.Line, w.Column, w.Err)
				}
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Compile: %v\nwant it to contain %q", err, tc.text)
			}
		})
	}
}

// errorsOf unpacks Compile's joined errors.
func errorsOf(err error) []*rules.Error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []*rules.Error
	for _, e := range errs {
		var re *rules.Error
		if errors.As(e, &re) {
			out = append(out, re)
		}
	}
	return out
}

func TestCompileAcceptsTypicalRules(t *testing.T) {
	// Each within DefaultCostLimit for claims of DefaultClaimsBytes and requests of
	// DefaultRequestBytes.
	for _, expr := range []string{
		`claims.tid == "contoso"`,
		`request.headers["x-tenant"] == claims.tid`,
		`"admins" in claims.groups`,
		`claims.groups.exists(g, g in ["auditors", "admins", "owners"])`,
		`claims.groups.exists(g, g.startsWith("team-"))`,
		`sets.intersects(claims.groups, ["auditors", "admins"])`,
		`"orders:write" in claims.scope.split(" ")`,
		`request.method in ["GET", "HEAD"] || "writers" in claims.groups`,
		`request.path.matches("^/orders/[0-9]+(/items/[0-9]+)?$")`,
		`claims.tid.lowerAscii() == request.headers["x-tenant"].lowerAscii()`,
		`claims.email.endsWith("@contoso.com") && claims.email_verified == true`,
		`!has(claims.act)`,
		`claims.age >= 18`,
	} {
		if _, err := rules.Compile([]rules.Spec{{Name: "r", Expr: expr}}); err != nil {
			t.Errorf("Compile(%s): %v", expr, err)
		}
	}
}

func TestCostLimitAtEvaluation(t *testing.T) {
	// A rule accepted at load for claims of DefaultClaimsBytes: with claims far larger
	// (from introspection, say) it is estimated again, and denied without running
	// when its bound exceeds the limit.
	rule := compileOne(t, `claims.groups.exists(g, g == "admins")`)
	many := make([]string, 60000)
	for i := range many {
		many[i] = fmt.Sprintf("g%d", i)
	}
	small := claimsOf(t, `{"groups": ["team", "admins"]}`)
	mid := claimsOf(t, mustJSON(t, map[string]any{"groups": many[:2000]})) // over the bytes assumed, within the limit
	huge := claimsOf(t, mustJSON(t, map[string]any{"groups": append(many, "admins")}))
	r := request("GET", "/")

	if ok, err := rule.Allow(r, small); !ok || err != nil {
		t.Fatalf("small claims: Allow = %v, %v", ok, err)
	}
	if ok, err := rule.Allow(r, mid); ok || err != nil {
		t.Fatalf("claims over the size assumed, cost within the limit: Allow = %v, %v; want false, nil", ok, err)
	}
	ok, err := rule.Allow(r, huge)
	if ok || !errors.Is(err, rules.ErrCostLimit) {
		t.Fatalf("huge claims: Allow = %v, %v; want false, ErrCostLimit", ok, err)
	}
	if !strings.Contains(err.Error(), "over the limit of 100000") {
		t.Errorf("error %q does not give the limit", err)
	}

	// A higher limit lets it run.
	rule = compileOne(t, `claims.groups.exists(g, g == "admins")`, rules.WithCostLimit(2_000_000))
	if ok, err := rule.Allow(r, huge); !ok || err != nil {
		t.Fatalf("huge claims under a higher limit: Allow = %v, %v", ok, err)
	}

	// The request too: a walk over a header larger than assumed.
	rule = compileOne(t, `request.headers.exists(k, k.startsWith("x-debug"))`)
	big := request("GET", "/")
	for i := range 30000 {
		big.Header.Set(fmt.Sprintf("X-H%d", i), "v")
	}
	if ok, err := rule.Allow(big, small); ok || !errors.Is(err, rules.ErrCostLimit) {
		t.Fatalf("huge header: Allow = %v, %v; want false, ErrCostLimit", ok, err)
	}
	// A rule that does not read the header does not care how large it is.
	if ok, err := compileOne(t, `request.method == "GET"`).Allow(big, small); !ok || err != nil {
		t.Fatalf("huge header, method rule: Allow = %v, %v", ok, err)
	}
	// Nor does a rule about another claim.
	if ok, err := compileOne(t, `!has(claims.tid)`).Allow(r, huge); !ok || err != nil {
		t.Fatalf("huge groups, tid rule: Allow = %v, %v", ok, err)
	}
	// Nor one whose cost does not depend on sizes: comparing with a constant reads at
	// most the constant's length.
	longTid := claimsOf(t, mustJSON(t, map[string]any{"tid": strings.Repeat("c", 1<<20)}))
	if ok, err := compileOne(t, `claims.tid == "contoso"`).Allow(r, longTid); ok || err != nil {
		t.Fatalf("a 1 MiB tid: Allow = %v, %v; want false, nil", ok, err)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHostileClaims(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
	wide := make([]any, 4000)
	for i := range wide {
		wide[i] = map[string]any{"x": i, "y": []any{i, "s"}}
	}
	// Every one false (or an error) on every payload below, and none may panic.
	exprs := []string{
		`claims.tid == "contoso"`,
		`has(claims.tid) && claims.tid == "contoso"`,
		`"admins" in claims.groups`,
		`claims.groups.exists(g, g == "admins")`,
		`claims.age == 18`,
		`claims.nested.a.a.a == 1`,
		`claims.nested != claims.nested`,
		`claims.exists(k, k == "tid" && claims[k] == "contoso")`,
		`size(claims) > 100`,
		`claims.tid.startsWith("contoso")`,
		`string(claims.tid) == "contoso"`,
		`int(claims.age) == 17`,
		`timestamp(int(claims.age)) < timestamp("1970-01-01T00:00:00Z")`,
		`claims.groups.join(",") == "admins"`,
	}
	for _, tc := range []struct{ name, payload string }{
		{"empty", `{}`},
		{"deeply nested", `{"nested": ` + deep + `, "tid": ` + deep + `, "groups": ` + deep + `}`},
		{"deeply nested arrays", `{"groups": ` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`},
		{"wide", `{"groups": ` + mustJSON(t, wide) + `}`},
		{"odd types", `{"tid": 7, "groups": "admins", "age": "18", "nested": [1, 2], "nothing": null}`},
		{"nulls", `{"tid": null, "groups": null, "age": null, "nested": null}`},
		{"huge numbers", `{"age": 1e308, "tid": -1e308, "groups": [1e308, -0]}`},
		{"odd strings", `{"tid": "\u0000\ud800x", "groups": ["\u0000", "", "admins\n"], "age": true}`},
		{"unicode names", `{"t\u0131d": "contoso", "TID": "contoso"}`},
		{"nested groups", `{"groups": [["admins"], {"admins": true}]}`},
		{"age out of int range", `{"age": 1e30}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c middleware.Claims
			if err := json.Unmarshal([]byte(tc.payload), &c); err != nil {
				t.Skipf("the Gate refuses this payload: %v", err)
			}
			for _, expr := range exprs {
				if ok, err := compileOne(t, expr).Allow(request("GET", "/"), &c); ok {
					t.Errorf("%s: Allow = true, %v", expr, err)
				}
			}
		})
	}
}

func TestNilInputs(t *testing.T) {
	rule := compileOne(t, `true`)
	if ok, err := rule.Allow(nil, claimsOf(t, `{}`)); ok || err == nil {
		t.Errorf("nil request: Allow = %v, %v", ok, err)
	}
	if ok, err := rule.Allow(request("GET", "/"), nil); ok || err == nil {
		t.Errorf("nil claims: Allow = %v, %v", ok, err)
	}
	// Claims built by hand, without Raw, and a request without a URL or header.
	r := &http.Request{Method: "GET"}
	if ok, err := compileOne(t, `request.path == "" && size(request.headers) == 0 && !has(claims.sub)`).Allow(r, &middleware.Claims{Subject: "alice"}); !ok || err != nil {
		t.Errorf("bare request and claims: Allow = %v, %v", ok, err)
	}
	// net/http: an empty method means GET.
	if ok, err := compileOne(t, `request.method == "GET"`).Allow(&http.Request{}, &middleware.Claims{}); !ok || err != nil {
		t.Errorf("empty method: Allow = %v, %v", ok, err)
	}
}

func TestRequestIsNotAValue(t *testing.T) {
	c := claimsOf(t, `{}`)
	r := request("GET", "/")
	for _, tc := range []struct {
		expr    string
		want    bool
		wantErr bool
	}{
		{expr: `request == request`, want: true},
		{expr: `type(request) == tokengate.Request`, want: true},
		{expr: `has(request.method)`, want: true},
		{expr: `dyn(request).headers.size() == 0`, want: true},
		{expr: `dyn(request).nope == 1`, wantErr: true},
		{expr: `tokengate.Request{method: "GET"} == request`, wantErr: true},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			rs, err := rules.Compile([]rules.Spec{{Name: "r", Expr: tc.expr}}, rules.WithCostLimit(1<<62))
			if err != nil {
				if tc.wantErr {
					return // refused at load: fine too
				}
				t.Fatal(err)
			}
			ok, err := rs[0].Allow(r, c)
			if (err != nil) != tc.wantErr || ok != tc.want {
				t.Fatalf("Allow = %v, %v", ok, err)
			}
		})
	}
}

func TestClaimsUsed(t *testing.T) {
	for _, tc := range []struct {
		expr  string
		names []string
		all   bool
	}{
		{`claims.tid == "contoso"`, []string{"tid"}, false},
		{`claims["tid"] == "contoso" && has(claims.sub)`, []string{"sub", "tid"}, false},
		{`"act" in claims`, []string{"act"}, false},
		{`claims.nested.a == 1 && claims.tid == claims.tid`, []string{"nested", "tid"}, false},
		{`request.headers["x-account"] == claims.sub`, []string{"sub"}, false},
		{`request.method == "GET"`, nil, false},
		{`claims.exists(k, k.startsWith("x"))`, nil, true},
		{`size(claims) > 3`, nil, true},
		{`claims[request.headers["x-claim"]] == "a"`, nil, true},
		{`claims.groups.exists(claims, claims == "admins")`, []string{"groups"}, true}, // shadowed: over-cautious
	} {
		t.Run(tc.expr, func(t *testing.T) {
			r := compileOne(t, tc.expr).(*rules.Rule)
			names, all := r.Claims()
			if !slices.Equal(names, tc.names) || all != tc.all {
				t.Errorf("Claims() = %q, %v; want %q, %v", names, all, tc.names, tc.all)
			}
		})
	}
	rs, err := rules.Compile([]rules.Spec{
		{Name: "a", Expr: `claims.tid == "contoso"`},
		{Name: "b", Expr: `claims.sub == request.headers["x-account"] && claims.tid != ""`},
	})
	if err != nil {
		t.Fatal(err)
	}
	if names, all := rules.ClaimsUsed(rs...); !slices.Equal(names, []string{"sub", "tid"}) || all {
		t.Errorf("ClaimsUsed = %q, %v", names, all)
	}
	if _, all := rules.ClaimsUsed(append(rs, foreign{})...); !all {
		t.Error("ClaimsUsed with a rule of another package: all = false")
	}
	if names, all := rules.ClaimsUsed(); names != nil || all {
		t.Errorf("ClaimsUsed() = %q, %v", names, all)
	}
}

type foreign struct{}

func (foreign) Name() string                                          { return "foreign" }
func (foreign) Allow(*http.Request, *middleware.Claims) (bool, error) { return true, nil }

func TestRuleAccessors(t *testing.T) {
	rs, err := rules.Compile([]rules.Spec{{Name: "tenant", Expr: `claims.tid == "contoso"`}})
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0].(*rules.Rule)
	if r.Name() != "tenant" || r.Expr() != `claims.tid == "contoso"` {
		t.Errorf("Name, Expr = %q, %q", r.Name(), r.Expr())
	}
	if rs, err := rules.Compile(nil); err != nil || len(rs) != 0 {
		t.Errorf("Compile(nil) = %v, %v", rs, err)
	}
}

func TestConcurrentEvaluation(t *testing.T) {
	rs, err := rules.Compile([]rules.Spec{
		{Name: "tenant", Expr: `request.headers["x-tenant"] == claims.tid`},
		{Name: "groups", Expr: `claims.groups.exists(g, g.startsWith("team-"))`},
		{Name: "walk", Expr: `request.headers.exists(k, k == "x-tenant")`},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := claimsOf(t, alice) // shared, as the Claims of a cached token are
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				tenant := "contoso"
				if (i+j)%2 == 1 {
					tenant = "fabrikam"
				}
				r := request("GET", "/", "X-Tenant: "+tenant)
				for _, rule := range rs {
					ok, err := rule.Allow(r, c)
					if want := tenant == "contoso" || rule.Name() != "tenant"; ok != want || err != nil {
						t.Errorf("%s with %s: Allow = %v, %v", rule.Name(), tenant, ok, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestValue(t *testing.T) {
	c := claimsOf(t, alice)
	r := request("GET", "/orders/1", "X-Tenant: contoso")
	for _, tc := range []struct {
		name, expr, want string
		wantErr          error // nil: no error
		wantEvalErr      bool
	}{
		{name: "groups", expr: `claims.groups.join(",")`, want: "admins,team-orders"},
		{name: "claim", expr: `string(claims.tid)`, want: "contoso"},
		{name: "number", expr: `string(int(claims.age))`, want: "18"},
		{name: "conditional", expr: `"admins" in claims.groups ? "admin" : "user"`, want: "admin"},
		{name: "format", expr: `"%s/%s".format([claims.tid, claims.sub])`, want: "contoso/alice"},
		{name: "header", expr: `request.headers["x-tenant"].upperAscii()`, want: "CONTOSO"},
		{name: "missing claim", expr: `string(claims.tier)`, wantEvalErr: true},
		{name: "not a string at evaluation", expr: `string(claims.nested)`, wantEvalErr: true},
		{name: "control character", expr: `claims.tid + "\r\nX-Admin: yes"`, wantEvalErr: true},
		{name: "dyn", expr: `claims.tid`, wantErr: rules.ErrType},
		{name: "bool", expr: `claims.tid == "contoso"`, wantErr: rules.ErrType},
		{name: "syntax", expr: `claims.tid +`, wantErr: rules.ErrSyntax},
		{name: "cost", expr: `claims.groups.map(g, claims.groups.join(",")).join(",")`, wantErr: rules.ErrCostLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := rules.CompileValue(rules.Spec{Name: "X-Auth-Groups", Expr: tc.expr})
			if tc.wantErr != nil {
				var re *rules.Error
				if !errors.Is(err, tc.wantErr) || !errors.As(err, &re) || re.Index != -1 || re.Name != "X-Auth-Groups" {
					t.Fatalf("CompileValue: %v; want an *Error with %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Eval(r, c)
			if tc.wantEvalErr {
				if err == nil || got != "" {
					t.Fatalf("Eval = %q, %v; want an error", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Eval = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := rules.CompileValue(rules.Spec{Name: "bad name", Expr: `"x"`}); !errors.Is(err, rules.ErrName) {
		t.Errorf("CompileValue with a bad name: %v", err)
	}
	v, err := rules.CompileValue(rules.Spec{Name: "X-Auth-Tenant", Expr: `string(claims.tid)`})
	if err != nil {
		t.Fatal(err)
	}
	if names, all := v.Claims(); !slices.Equal(names, []string{"tid"}) || all || v.Name() != "X-Auth-Tenant" || v.Expr() != `string(claims.tid)` {
		t.Errorf("Claims, Name, Expr = %q %v %q %q", names, all, v.Name(), v.Expr())
	}
}

func TestValueClaimsOnly(t *testing.T) {
	for _, tc := range []struct {
		expr      string
		line, col int
	}{
		{`request.method`, 1, 1},
		{`claims.tid + "/" + request.headers["x-tenant"]`, 1, 20},
		{"string(claims.tid) +\n  request.host", 2, 3},
		{`claims.groups.filter(g, g == request.path).join(",")`, 1, 30},
	} {
		_, err := rules.CompileValue(rules.Spec{Name: "X-Auth-Tenant", Expr: tc.expr}, rules.ClaimsOnly())
		var re *rules.Error
		if !errors.Is(err, rules.ErrType) || !errors.As(err, &re) || re.Field != "expr" || re.Line != tc.line || re.Column != tc.col ||
			!strings.Contains(re.Error(), "may read only claims") {
			t.Errorf("%s: %#v; want a type error at %d:%d", tc.expr, re, tc.line, tc.col)
		}
	}
	// The same expressions are fine without the option.
	if _, err := rules.CompileValue(rules.Spec{Name: "X-Method", Expr: `request.method`}); err != nil {
		t.Fatal(err)
	}
	// A claims-only value needs no request.
	v, err := rules.CompileValue(rules.Spec{Name: "X-Auth-Groups", Expr: `claims.groups.join(",")`}, rules.ClaimsOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*http.Request{nil, request("GET", "/")} {
		if got, err := v.Eval(r, claimsOf(t, alice)); got != "admins,team-orders" || err != nil {
			t.Errorf("Eval(%v) = %q, %v", r != nil, got, err)
		}
	}
	// Any other value still fails closed without one.
	v, err = rules.CompileValue(rules.Spec{Name: "X-Auth-Groups", Expr: `claims.groups.join(",")`})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.Eval(nil, claimsOf(t, alice)); err == nil {
		t.Errorf("Eval(nil) without ClaimsOnly = %q, nil", got)
	}
}
