package rules

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"

	"github.com/tokengate/tokengate/middleware"
)

// TestEstimateBoundsCost checks, on inputs as large as the defaults assume, that
// cel-go's runtime tracker counts no more than the bound the Gate relies on instead
// of it (cost.go).
func TestEstimateBoundsCost(t *testing.T) {
	// Claims of about DefaultClaimsBytes: many short groups, or one long string.
	groups := make([]string, 1200) // 4800 bytes: "0",
	for i := range groups {
		groups[i] = fmt.Sprint(i % 10)
	}
	manyGroups := mustClaims(t, map[string]any{"tid": "contoso", "groups": groups, "scope": strings.Repeat("a ", 1400)})
	long := mustClaims(t, map[string]any{"tid": strings.Repeat("c", DefaultClaimsBytes/2-100), "groups": []string{strings.Repeat("g", DefaultClaimsBytes/2-100)}})
	// A request of about DefaultRequestBytes: many headers, or one long one.
	manyHeaders := &http.Request{Method: "GET", URL: &url.URL{Path: "/orders/1"}, Host: "orders.example.com", Header: http.Header{}}
	for i := 0; i < DefaultRequestBytes/16; i++ {
		manyHeaders.Header[fmt.Sprintf("X-H%d", i)] = []string{"v"}
	}
	longHeader := &http.Request{Method: "GET", URL: &url.URL{Path: "/" + strings.Repeat("o", DefaultRequestBytes-10)}, Host: "h",
		Header: http.Header{"X-Tenant": {strings.Repeat("contoso,", DefaultRequestBytes/8-8)}}}

	specs := append([]Spec{
		{Name: "typical-1", Expr: `claims.groups.exists(g, g in ["auditors", "admins", "owners"])`},
		{Name: "typical-2", Expr: `claims.groups.exists(g, g.startsWith("team-"))`},
		{Name: "typical-3", Expr: `request.path.matches("^/orders/[0-9]+(/items/[0-9]+)?$")`},
		{Name: "typical-4", Expr: `claims.tid.lowerAscii() == request.headers["x-tenant"].lowerAscii()`},
		{Name: "typical-5", Expr: `"orders:write" in claims.scope.split(" ")`},
	}, fuzzRules...)
	e, err := env()
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range specs {
		p, errs := compile(0, spec, cel.BoolType, newSettings([]Option{WithCostLimit(10_000_000)}))
		if len(errs) > 0 {
			t.Fatalf("%s: %v", spec.Name, errs)
		}
		tracked, err := e.Program(p.checked, cel.EvalOptions(cel.OptOptimize, cel.OptTrackCost))
		if err != nil {
			t.Fatal(err)
		}
		atBounds, err := p.estimate(DefaultClaimsBytes, DefaultRequestBytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range []struct {
			name string
			c    *middleware.Claims
			r    *http.Request
		}{{"many groups, many headers", manyGroups, manyHeaders}, {"long strings", long, longHeader}, {"many groups, long header", manyGroups, longHeader}} {
			cs, rs := p.claimsSize(in.c), p.requestSize(in.r)
			if cs > DefaultClaimsBytes || rs > DefaultRequestBytes {
				t.Fatalf("%s: inputs of %d and %d bytes are larger than the defaults", in.name, cs, rs)
			}
			bound, err := p.estimate(cs, rs)
			if err != nil {
				t.Fatal(err)
			}
			_, det, _ := tracked.Eval(newActivation(in.r, claimsMap(in.c)))
			if got := *det.ActualCost(); got > bound || bound > atBounds {
				t.Errorf("%s on %s: cost %d, bound %d at the inputs' size, %d at the defaults", spec.Name, in.name, got, bound, atBounds)
			}
		}
	}
}

func mustClaims(t *testing.T, v map[string]any) *middleware.Claims {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var c middleware.Claims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}
