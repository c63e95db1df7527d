package policy_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/policy"
)

const valuesFile = minimal + `forward:
  values:
    - {header: X-Auth-Groups, expr: 'claims.groups.join(",")'}
    - header: tenant
      expr: 'has(claims.tid) ? string(claims.tid) : "none"'
`

func loadValues(t *testing.T, file string) *policy.Loaded {
	t.Helper()
	l, err := policy.Load("t.yaml", []byte(file), policy.ForProxy, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func claimsJSON(t *testing.T, payload string) *middleware.Claims {
	t.Helper()
	var c middleware.Claims
	if err := c.UnmarshalJSON([]byte(payload)); err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestForwardValuesLoad(t *testing.T) {
	l := loadValues(t, valuesFile)
	// forward.claims keeps its default; the values' headers come after its own.
	if got := strings.Join(l.Identity().Headers(), " "); got != "X-Auth-Client-Id X-Auth-Scopes X-Auth-Subject X-Auth-Groups Tenant" {
		t.Errorf("Headers() = %s", got)
	}
	// The cache keeps what the values read, besides what forward.claims names.
	for _, c := range []string{"groups", "tid", "sub", "client_id"} {
		if !slices.Contains(l.Gate.Tokens.KeepClaims, c) {
			t.Errorf("KeepClaims %v lacks %s", l.Gate.Tokens.KeepClaims, c)
		}
	}
	// A value over every claim keeps them all.
	l = loadValues(t, minimal+"forward:\n  values: [{header: X-Claims, expr: 'string(size(claims))'}]\n")
	if l.Gate.Tokens.KeepClaims != nil {
		t.Errorf("a value that reads every claim, KeepClaims %v: want nil (every claim)", l.Gate.Tokens.KeepClaims)
	}
	// No values: the cache keeps what it kept.
	l = loadValues(t, minimal)
	if !slices.Equal(l.Gate.Tokens.KeepClaims, []string{"client_id", "sub"}) {
		t.Errorf("KeepClaims %v", l.Gate.Tokens.KeepClaims)
	}
}

func TestForwardValuesSet(t *testing.T) {
	id := loadValues(t, valuesFile).Identity()
	long := strings.Repeat("g", policy.MaxValueBytes)
	for _, tc := range []struct {
		name, claims           string
		wantGroups, wantTenant []string // nil: no header
	}{
		{"joined", `{"sub":"alice","groups":["admins","team-orders"],"tid":"contoso"}`, []string{"admins,team-orders"}, []string{"contoso"}},
		{"empty list", `{"groups":[]}`, []string{""}, []string{"none"}},
		{"missing claim", `{"sub":"alice"}`, nil, []string{"none"}},
		{"null claim", `{"groups":null,"tid":null}`, nil, nil},
		{"another type", `{"groups":"admins","tid":7}`, nil, []string{"7"}},
		{"not strings", `{"groups":["a",1]}`, nil, []string{"none"}},
		{"control characters", `{"groups":["a\r\nX-Admin: 1"],"tid":"a\u0000b"}`, nil, nil},
		{"as long as allowed", `{"groups":["` + long + `"]}`, []string{long}, []string{"none"}},
		{"too long", `{"groups":["` + long + `","g"]}`, nil, []string{"none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			id.Set(h, claimsJSON(t, tc.claims))
			if got := h["X-Auth-Groups"]; !slices.Equal(got, tc.wantGroups) {
				t.Errorf("X-Auth-Groups = %q, want %q", clipped(got), clipped(tc.wantGroups))
			}
			if got := h["Tenant"]; !slices.Equal(got, tc.wantTenant) {
				t.Errorf("Tenant = %q, want %q", got, tc.wantTenant)
			}
		})
	}
}

func clipped(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		if len(v) > 20 {
			v = v[:20] + "…"
		}
		out[i] = v
	}
	return out
}

func TestForwardValuesStripInbound(t *testing.T) {
	id := loadValues(t, valuesFile).Identity()
	h := http.Header{}
	for _, name := range []string{"Tenant", "tenant", "TENANT", "tEnAnT", "X-Auth-Groups", "x_auth_groups", "X-AUTH_GROUPS", "X-Other", "Tenants"} {
		h[name] = []string{"spoof"}
	}
	id.StripInbound(h)
	if len(h) != 2 || h.Get("X-Other") == "" || h.Get("Tenants") == "" {
		t.Fatalf("left %v", h)
	}
	// Then Set writes the token's own.
	id.Set(h, claimsJSON(t, `{"groups":["eng"],"tid":"contoso"}`))
	if !slices.Equal(h["X-Auth-Groups"], []string{"eng"}) || !slices.Equal(h["Tenant"], []string{"contoso"}) {
		t.Fatalf("after Set: %v", h)
	}
}

func TestForwardValuesProblems(t *testing.T) {
	file := minimal + `forward:
  claims: {sub: X-User}
  values:
    - {header: X-Groups, expr: 'claims.groups.join(",")'}
    - {header: "X Groups", expr: '"a"'}
    - {header: Cookie, expr: '"a"'}
    - {header: x_user, expr: '"a"'}
    - {header: X-GROUPS, expr: '"a"'}
    - {header: X-A, expr: 'claims.groups.join(",") +'}
    - {header: X-B, expr: 'claims.tid'}
    - {header: X-C, expr: 'size(claims.groups)'}
    - {header: X-D, expr: 'string(claims.tid) + request.path'}
    - {expr: '"a"'}
    - {header: X-E}
`
	_, err := policy.Load("t.yaml", []byte(file), policy.ForProxy, policy.Overrides{})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`t.yaml:11: forward.values[1].header: "X Groups" is not a header name`,
		`t.yaml:12: forward.values[2].header: "Cookie" is a header the proxy manages`,
		`t.yaml:13: forward.values[3].header: header "x_user" is also used for claim "sub"`,
		`t.yaml:14: forward.values[4].header: header "X-GROUPS" is also used for forward.values[0]`,
		`t.yaml:15: forward.values[5].expr: at 1:`,
		`t.yaml:16: forward.values[6].expr: type error: the expression is of type dyn, not string`,
		`t.yaml:17: forward.values[7].expr: type error: the expression is of type int, not string`,
		`t.yaml:18: forward.values[8].expr: at 1:22 of the expression: type error: request cannot be read here: the expression may read only claims`,
		`t.yaml:19: forward.values[9].header: is required`,
		`t.yaml:20: forward.values[10].expr: syntax error: the expression is empty`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "forward.values[0]:") || strings.Contains(err.Error(), "forward.values[0].") {
		t.Errorf("the valid value has a problem:\n%v", err)
	}
}
