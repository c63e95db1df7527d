package serviceaccount_test

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/serviceaccount"
)

func TestAllowList(t *testing.T) {
	a, err := serviceaccount.ParseAllow([]string{"payments/billing", "payments/billing.v2", "monitoring/*"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ns, name string
		want     bool
	}{
		{"payments", "billing", true},
		{"payments", "billing.v2", true},
		{"monitoring", "prometheus", true},
		{"monitoring", "anything.at.all", true},
		{"payments", "refunds", false},
		{"payments", "billing.v3", false},
		{"payments", "*", false},
		{"billing", "payments", false},
		{"monitoring-2", "prometheus", false},
		{"Monitoring", "prometheus", false},
		{"payments", "Billing", false},
		{"", "", false},
		{"*", "billing", false},
	} {
		id := serviceaccount.Identity{Namespace: tc.ns, Name: tc.name}
		if got := a.Allows(id); got != tc.want {
			t.Errorf("Allows(%s) = %v", id, got)
		}
	}
	var none *serviceaccount.AllowList
	if none.Allows(serviceaccount.Identity{Namespace: "payments", Name: "billing"}) {
		t.Error("a nil list allows")
	}
}

func TestParseAllowRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry string
		want  string
	}{
		{"empty", "", "not namespace/name or namespace/*"},
		{"no slash", "payments", "not namespace/name or namespace/*"},
		{"a sub", "system:serviceaccount:payments:billing", "not namespace/name or namespace/*"},
		{"colon form", "payments:billing", "not namespace/name or namespace/*"},
		{"empty namespace", "/billing", "namespace: is empty"},
		{"empty name", "payments/", "name: is empty"},
		{"two slashes", "payments/billing/x", "more than one '/'"},
		{"a double slash", "payments//billing", "more than one '/'"},
		{"wildcard namespace", "*/billing", "the namespace cannot be a wildcard"},
		{"wildcard everything", "*/*", "the namespace cannot be a wildcard"},
		{"a star alone", "*", "not namespace/name or namespace/*"},
		{"a partial wildcard", "payments/bill*", "name: byte 4 is not"},
		{"a partial namespace wildcard", "pay*/billing", "namespace: byte 3 is not"},
		{"a double star", "payments/**", "name: byte 0 is not"},
		{"upper case", "Payments/billing", "namespace: byte 0 is not"},
		{"a leading space", " payments/billing", "namespace: byte 0 is not"},
		{"a trailing space", "payments/billing ", "name: byte 7 is not"},
		{"a space around the slash", "payments / billing", "namespace: byte 8 is not"},
		{"a dot in the namespace", "pay.ments/billing", "namespace: byte 3 is not"},
		{"a long namespace", strings.Repeat("n", 64) + "/billing", "namespace: is longer than 63"},
		{"a long name", "payments/" + strings.Repeat("b", 254), "name: is longer than 253"},
		{"two dots", "payments/bill..ing", "name: the '.' at byte 4"},
		{"a look-alike", "payments/bіlling", "name: byte 1 is not"},
		{"a control character", "payments/bill\x00ing", "name: byte 4 is not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := serviceaccount.ParseAllow([]string{"ok/fine", tc.entry})
			if err == nil {
				t.Fatalf("accepted: %v", a)
			}
			if a != nil {
				t.Error("a list with an error")
			}
			if !errors.Is(err, serviceaccount.ErrInvalidEntry) {
				t.Errorf("%v does not match ErrInvalidEntry", err)
			}
			var e *serviceaccount.EntryError
			if !errors.As(err, &e) || e.Index != 1 || e.Entry != tc.entry {
				t.Fatalf("%v: not an *EntryError for entry 1", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

// ParseAllow reports every bad entry at once, each with its index.
func TestParseAllowReportsEveryEntry(t *testing.T) {
	_, err := serviceaccount.ParseAllow([]string{"payments/billing", "Payments/x", "payments/billing", "ok/*", "*/x", "ok/*"})
	want := `entry 1 "Payments/x": invalid allow-list entry: namespace: byte 0 is not a lower-case letter, a digit or '-'
entry 2 "payments/billing": invalid allow-list entry: entry 0 is the same
entry 4 "*/x": invalid allow-list entry: the namespace cannot be a wildcard
entry 5 "ok/*": invalid allow-list entry: entry 3 is the same`
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 4 {
		t.Errorf("not four errors joined: %#v", err)
	}
}

func TestParseAllowEmpty(t *testing.T) {
	for _, entries := range [][]string{nil, {}} {
		if _, err := serviceaccount.ParseAllow(entries); !errors.Is(err, serviceaccount.ErrEmptyAllowList) {
			t.Errorf("%#v: %v", entries, err)
		}
	}
}

func TestRule(t *testing.T) {
	a, err := serviceaccount.ParseAllow([]string{"payments/billing", "monitoring/*"})
	if err != nil {
		t.Fatal(err)
	}
	rule := a.Rule("refund-callers")
	if rule.Name() != "refund-callers" {
		t.Errorf("Name() = %q", rule.Name())
	}
	r := httptest.NewRequest("POST", "/refunds", nil)
	for _, tc := range []struct {
		name, sub string
		allow     bool
		err       error
	}{
		{"listed", "system:serviceaccount:payments:billing", true, nil},
		{"namespace wildcard", "system:serviceaccount:monitoring:prometheus", true, nil},
		{"not listed", "system:serviceaccount:payments:refunds", false, nil},
		{"another namespace", "system:serviceaccount:default:billing", false, nil},
		{"a user", "alice", false, serviceaccount.ErrInvalidSubject},
		{"no sub", "", false, serviceaccount.ErrInvalidSubject},
		{"the group form", "system:serviceaccounts:payments", false, serviceaccount.ErrInvalidSubject},
		{"a wildcard sub", "system:serviceaccount:monitoring:*", false, serviceaccount.ErrInvalidSubject},
		{"an extra part", "system:serviceaccount:payments:billing:x", false, serviceaccount.ErrInvalidSubject},
		{"upper case", "system:serviceaccount:payments:Billing", false, serviceaccount.ErrInvalidSubject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allow, err := rule.Allow(r, &middleware.Claims{Subject: tc.sub})
			if allow != tc.allow || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("Allow = %v, %v; want %v, %v", allow, err, tc.allow, tc.err)
			}
		})
	}
	if allow, err := rule.Allow(r, nil); allow || !errors.Is(err, serviceaccount.ErrInvalidSubject) {
		t.Errorf("nil claims: %v, %v", allow, err)
	}
	var none *serviceaccount.AllowList
	if allow, err := none.Rule("nil").Allow(r, &middleware.Claims{Subject: "system:serviceaccount:payments:billing"}); allow || err != nil {
		t.Errorf("a nil list's rule: %v, %v", allow, err)
	}
}

// Given the clusters' issuers, the rule refuses a token of any other issuer before it
// reads sub: another issuer's client may have chosen its sub.
func TestRuleOfIssuers(t *testing.T) {
	a, err := serviceaccount.ParseAllow([]string{"payments/billing"})
	if err != nil {
		t.Fatal(err)
	}
	const cluster, other = "https://kubernetes.default.svc.cluster.local", "https://auth.example.com"
	rule := a.Rule("serviceAccounts", cluster, "https://oidc.eks.example/id/1")
	r := httptest.NewRequest("POST", "/refunds", nil)
	for _, tc := range []struct {
		name, iss, sub string
		allow          bool
		err            error
	}{
		{"a cluster's listed ServiceAccount", cluster, "system:serviceaccount:payments:billing", true, nil},
		{"the other cluster's", "https://oidc.eks.example/id/1", "system:serviceaccount:payments:billing", true, nil},
		{"a cluster's other ServiceAccount", cluster, "system:serviceaccount:payments:refunds", false, nil},
		{"another issuer naming a listed one", other, "system:serviceaccount:payments:billing", false, serviceaccount.ErrOtherIssuer},
		{"no issuer", "", "system:serviceaccount:payments:billing", false, serviceaccount.ErrOtherIssuer},
		{"a cluster's malformed sub", cluster, "system:serviceaccount:payments:Billing", false, serviceaccount.ErrInvalidSubject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allow, err := rule.Allow(r, &middleware.Claims{Issuer: tc.iss, Subject: tc.sub})
			if allow != tc.allow || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("Allow = %v, %v; want %v, %v", allow, err, tc.allow, tc.err)
			}
		})
	}
}

func TestRequireWorkload(t *testing.T) {
	check := serviceaccount.RequireWorkload()
	claim := func(raw string) map[string]json.RawMessage {
		return map[string]json.RawMessage{"kubernetes.io": json.RawMessage(raw)}
	}
	good := `{"namespace":"payments","serviceaccount":{"name":"billing","uid":"u1"}}`
	for _, tc := range []struct {
		name string
		c    *middleware.Claims
		err  error
	}{
		{"a workload's token", &middleware.Claims{Subject: "system:serviceaccount:payments:billing", Raw: claim(good)}, nil},
		{"a malformed sub", &middleware.Claims{Subject: "system:serviceaccount:payments:Billing", Raw: claim(good)}, serviceaccount.ErrInvalidSubject},
		{"no kubernetes.io claim", &middleware.Claims{Subject: "system:serviceaccount:payments:billing"}, serviceaccount.ErrNoKubernetesClaim},
		{"a claim of another ServiceAccount", &middleware.Claims{Subject: "system:serviceaccount:payments:refunds", Raw: claim(good)}, serviceaccount.ErrClaimMismatch},
		{"a claim Kubernetes does not write", &middleware.Claims{Subject: "system:serviceaccount:payments:billing", Raw: claim(`{"namespace":"payments"}`)}, serviceaccount.ErrInvalidKubernetesClaim},
		{"no claims", nil, serviceaccount.ErrNoKubernetesClaim},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := check.CheckClaims(tc.c)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("CheckClaims = %v, want %v", err, tc.err)
			}
		})
	}
}
