package serviceaccount_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"

	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/serviceaccount"
)

func ExampleParse() {
	for _, sub := range []string{
		"system:serviceaccount:payments:billing",
		"system:serviceaccount:payments:billing.v2",
		"system:serviceaccounts:payments",
		"system:serviceaccount:payments:billing:admin",
		"system:serviceaccount:Payments:billing",
	} {
		id, err := serviceaccount.Parse(sub)
		if err != nil {
			fmt.Println(errors.Is(err, serviceaccount.ErrInvalidSubject), err)
			continue
		}
		fmt.Println(id)
	}
	// Output:
	// payments/billing
	// payments/billing.v2
	// true sub is not system:serviceaccount:<namespace>:<name>: it does not begin with system:serviceaccount:
	// true sub is not system:serviceaccount:<namespace>:<name>: more than one ':' after system:serviceaccount:
	// true sub is not system:serviceaccount:<namespace>:<name>: namespace: byte 0 is not a lower-case letter, a digit or '-'
}

func ExampleParseAllow() {
	allow, err := serviceaccount.ParseAllow([]string{"payments/billing", "monitoring/*"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, id := range []serviceaccount.Identity{
		{Namespace: "payments", Name: "billing"},
		{Namespace: "payments", Name: "refunds"},
		{Namespace: "monitoring", Name: "prometheus"},
	} {
		fmt.Println(id, allow.Allows(id))
	}

	_, err = serviceaccount.ParseAllow([]string{"payments/billing", "*/billing", "Payments/refunds"})
	fmt.Println(err)
	// Output:
	// payments/billing true
	// payments/refunds false
	// monitoring/prometheus true
	// entry 1 "*/billing": invalid allow-list entry: the namespace cannot be a wildcard
	// entry 2 "Payments/refunds": invalid allow-list entry: namespace: byte 0 is not a lower-case letter, a digit or '-'
}

func ExampleAllowList_Rule() {
	allow, err := serviceaccount.ParseAllow([]string{"payments/billing"})
	if err != nil {
		fmt.Println(err)
		return
	}
	// In a Gate: middleware.Route{Match: "POST /refunds", Rules: []middleware.Rule{rule}}.
	// Here, by hand:
	rule := allow.Rule("serviceAccounts")
	r := httptest.NewRequest("POST", "/refunds", nil)
	for _, sub := range []string{
		"system:serviceaccount:payments:billing",
		"system:serviceaccount:payments:refunds",
		"alice",
	} {
		ok, err := rule.Allow(r, &middleware.Claims{Subject: sub})
		fmt.Printf("%s: %v (%v)\n", sub, ok, err)
	}
	// Output:
	// system:serviceaccount:payments:billing: true (<nil>)
	// system:serviceaccount:payments:refunds: false (<nil>)
	// alice: false (sub is not system:serviceaccount:<namespace>:<name>: it does not begin with system:serviceaccount:)
}

func ExampleKubernetesClaim() {
	var c middleware.Claims // as the Gate verified them
	_ = json.Unmarshal([]byte(`{
		"sub": "system:serviceaccount:payments:billing",
		"kubernetes.io": {
			"namespace": "payments",
			"serviceaccount": {"name": "billing", "uid": "6c1b2c47-6a4a-4b3e-8f55-0f6a1d0c9e11"},
			"pod": {"name": "billing-7d9f8b6c5-x2x4q", "uid": "0b0e8a9e-3c1d-4f3a-9d1e-2b9b1c8f7a60"},
			"node": {"name": "node-1", "uid": "a3f0c2d4-5e6f-4a1b-8c9d-0e1f2a3b4c5d"}
		}
	}`), &c)
	w, err := serviceaccount.KubernetesClaim(&c)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(w.ServiceAccount, w.ServiceAccountUID)
	fmt.Println(w.Pod.Name, w.Node.Name)

	// A claim that names another ServiceAccount than sub is refused.
	_ = json.Unmarshal([]byte(`{
		"sub": "system:serviceaccount:payments:billing",
		"kubernetes.io": {"namespace": "kube-system", "serviceaccount": {"name": "billing", "uid": "u1"}}
	}`), &c)
	_, err = serviceaccount.KubernetesClaim(&c)
	fmt.Println(errors.Is(err, serviceaccount.ErrClaimMismatch))
	// Output:
	// payments/billing 6c1b2c47-6a4a-4b3e-8f55-0f6a1d0c9e11
	// billing-7d9f8b6c5-x2x4q node-1
	// true
}
