package serviceaccount_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/serviceaccount"
)

// claims decodes a payload as the Gate does.
func claims(t testing.TB, payload string) *middleware.Claims {
	t.Helper()
	var c middleware.Claims
	if err := json.Unmarshal([]byte(payload), &c); err != nil {
		t.Fatalf("payload %s: %v", payload, err)
	}
	return &c
}

const (
	saUID   = "6c1b2c47-6a4a-4b3e-8f55-0f6a1d0c9e11"
	podUID  = "0b0e8a9e-3c1d-4f3a-9d1e-2b9b1c8f7a60"
	nodeUID = "a3f0c2d4-5e6f-4a1b-8c9d-0e1f2a3b4c5d"
)

// projected is the payload of a projected ServiceAccount token of Kubernetes 1.30 and
// later, for payments/billing, bound to a pod.
const projected = `{
  "aud": ["https://orders.example.com"],
  "exp": 1893456000, "iat": 1893452400, "nbf": 1893452400,
  "iss": "https://kubernetes.default.svc.cluster.local",
  "jti": "0c6f1d7e-0d0a-4b8a-9d4c-33e2f5b1c8aa",
  "kubernetes.io": {
    "namespace": "payments",
    "node": {"name": "node-1.eu-west-1.compute.internal", "uid": "` + nodeUID + `"},
    "pod": {"name": "billing-7d9f8b6c5-x2x4q", "uid": "` + podUID + `"},
    "serviceaccount": {"name": "billing", "uid": "` + saUID + `"},
    "warnafter": 1893456000
  },
  "sub": "system:serviceaccount:payments:billing"
}`

func TestKubernetesClaim(t *testing.T) {
	w, err := serviceaccount.KubernetesClaim(claims(t, projected))
	if err != nil {
		t.Fatal(err)
	}
	want := serviceaccount.Workload{
		ServiceAccount:    serviceaccount.Identity{Namespace: "payments", Name: "billing"},
		ServiceAccountUID: saUID,
		Pod:               serviceaccount.Ref{Name: "billing-7d9f8b6c5-x2x4q", UID: podUID},
		Node:              serviceaccount.Ref{Name: "node-1.eu-west-1.compute.internal", UID: nodeUID},
	}
	if w != want {
		t.Errorf("got %+v\nwant %+v", w, want)
	}
}

func TestKubernetesClaimOptionalMembers(t *testing.T) {
	for _, tc := range []struct {
		name, claim string
		pod, node   serviceaccount.Ref
	}{
		{"not bound to a pod", `{"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u1"}}`, serviceaccount.Ref{}, serviceaccount.Ref{}},
		{"a pod without its node (before 1.30)", `{"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u1"}, "pod": {"name": "p", "uid": "u2"}}`, serviceaccount.Ref{Name: "p", UID: "u2"}, serviceaccount.Ref{}},
		{"bound to a node", `{"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u1"}, "node": {"name": "n", "uid": "!u~3"}}`, serviceaccount.Ref{}, serviceaccount.Ref{Name: "n", UID: "!u~3"}},
		{"unknown members are ignored", `{"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u1", "extra": [1]}, "secret": {"name": "s", "uid": "u4"}, "attestations": {}, "future": null}`, serviceaccount.Ref{}, serviceaccount.Ref{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := serviceaccount.KubernetesClaim(claims(t, `{"sub": "system:serviceaccount:payments:billing", "kubernetes.io": `+tc.claim+`}`))
			if err != nil {
				t.Fatal(err)
			}
			if w.ServiceAccountUID != "u1" || w.Pod != tc.pod || w.Node != tc.node {
				t.Errorf("got %+v", w)
			}
		})
	}
}

func TestKubernetesClaimRefused(t *testing.T) {
	const sub = `"sub": "system:serviceaccount:payments:billing"`
	const sa = `"serviceaccount": {"name": "billing", "uid": "u1"}`
	for _, tc := range []struct {
		name, payload string
		class         error
		want          string
	}{
		{"no claim", `{` + sub + `}`, serviceaccount.ErrNoKubernetesClaim, ""},
		{"a legacy Secret-based token", `{` + sub + `, "kubernetes.io/serviceaccount/namespace": "payments"}`, serviceaccount.ErrNoKubernetesClaim, ""},
		{"no sub", `{"kubernetes.io": {"namespace": "payments", ` + sa + `}}`, serviceaccount.ErrInvalidSubject, ""},
		{"a user's sub", `{"sub": "alice", "kubernetes.io": {"namespace": "payments", ` + sa + `}}`, serviceaccount.ErrInvalidSubject, ""},

		// Types.
		{"claim is a string", `{` + sub + `, "kubernetes.io": "payments/billing"}`, serviceaccount.ErrInvalidKubernetesClaim, "the claim is not a JSON object"},
		{"claim is null", `{` + sub + `, "kubernetes.io": null}`, serviceaccount.ErrInvalidKubernetesClaim, "the claim is not a JSON object"},
		{"claim is an array", `{` + sub + `, "kubernetes.io": [{"namespace": "payments"}]}`, serviceaccount.ErrInvalidKubernetesClaim, "the claim is not a JSON object"},
		{"no namespace", `{` + sub + `, "kubernetes.io": {` + sa + `}}`, serviceaccount.ErrInvalidKubernetesClaim, "the claim has no namespace"},
		{"namespace a number", `{` + sub + `, "kubernetes.io": {"namespace": 7, ` + sa + `}}`, serviceaccount.ErrInvalidKubernetesClaim, "namespace is not a string"},
		{"namespace null", `{` + sub + `, "kubernetes.io": {"namespace": null, ` + sa + `}}`, serviceaccount.ErrInvalidKubernetesClaim, "namespace is not a string"},
		{"namespace a list", `{` + sub + `, "kubernetes.io": {"namespace": ["payments"], ` + sa + `}}`, serviceaccount.ErrInvalidKubernetesClaim, "namespace is not a string"},
		{"no serviceaccount", `{` + sub + `, "kubernetes.io": {"namespace": "payments"}}`, serviceaccount.ErrInvalidKubernetesClaim, "the claim has no serviceaccount"},
		{"serviceaccount a string", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": "billing"}}`, serviceaccount.ErrInvalidKubernetesClaim, "serviceaccount is not a JSON object"},
		{"serviceaccount without uid", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "billing"}}}`, serviceaccount.ErrInvalidKubernetesClaim, "serviceaccount has no uid"},
		{"serviceaccount without name", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": {"uid": "u1"}}}`, serviceaccount.ErrInvalidKubernetesClaim, "serviceaccount has no name"},
		{"uid a number", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "billing", "uid": 1}}}`, serviceaccount.ErrInvalidKubernetesClaim, "serviceaccount.uid is not a string"},
		{"uid empty", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "billing", "uid": ""}}}`, serviceaccount.ErrInvalidKubernetesClaim, "serviceaccount.uid: is empty"},
		{"uid with a newline", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u\n1"}}}`, serviceaccount.ErrInvalidKubernetesClaim, "serviceaccount.uid: byte 1 is not printable"},
		{"uid with a space", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u 1"}}}`, serviceaccount.ErrInvalidKubernetesClaim, "serviceaccount.uid: byte 1 is not printable"},
		{"uid with DEL", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u\u007f"}}}`, serviceaccount.ErrInvalidKubernetesClaim, "serviceaccount.uid: byte 1 is not printable"},
		{"uid too long", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "` + strings.Repeat("u", 129) + `"}}}`, serviceaccount.ErrInvalidKubernetesClaim, "serviceaccount.uid: is longer than 128"},
		{"pod a string", `{` + sub + `, "kubernetes.io": {"namespace": "payments", ` + sa + `, "pod": "billing-1"}}`, serviceaccount.ErrInvalidKubernetesClaim, "pod is not a JSON object"},
		{"pod null", `{` + sub + `, "kubernetes.io": {"namespace": "payments", ` + sa + `, "pod": null}}`, serviceaccount.ErrInvalidKubernetesClaim, "pod is not a JSON object"},
		{"pod without uid", `{` + sub + `, "kubernetes.io": {"namespace": "payments", ` + sa + `, "pod": {"name": "p"}}}`, serviceaccount.ErrInvalidKubernetesClaim, "pod has no uid"},
		{"pod name a bool", `{` + sub + `, "kubernetes.io": {"namespace": "payments", ` + sa + `, "pod": {"name": true, "uid": "u2"}}}`, serviceaccount.ErrInvalidKubernetesClaim, "pod.name is not a string"},
		{"pod name upper case", `{` + sub + `, "kubernetes.io": {"namespace": "payments", ` + sa + `, "pod": {"name": "Billing", "uid": "u2"}}}`, serviceaccount.ErrInvalidKubernetesClaim, "pod.name: byte 0 is not"},
		{"node name with CR LF", `{` + sub + `, "kubernetes.io": {"namespace": "payments", ` + sa + `, "node": {"name": "n\r\nx", "uid": "u3"}}}`, serviceaccount.ErrInvalidKubernetesClaim, "node.name: byte 1 is not"},
		{"node an array", `{` + sub + `, "kubernetes.io": {"namespace": "payments", ` + sa + `, "node": []}}`, serviceaccount.ErrInvalidKubernetesClaim, "node is not a JSON object"},
		{"namespace invalid", `{` + sub + `, "kubernetes.io": {"namespace": "Payments", ` + sa + `}}`, serviceaccount.ErrInvalidKubernetesClaim, "namespace: byte 0 is not"},

		// Ambiguous members: another decoder could read another value.
		{"namespace twice", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "namespace": "payments", ` + sa + `}}`, serviceaccount.ErrInvalidKubernetesClaim, `the claim has "namespace" twice`},
		{"namespace in another case", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "Namespace": "admin", ` + sa + `}}`, serviceaccount.ErrInvalidKubernetesClaim, `differs from "namespace" only in case`},
		{"name in another case", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "billing", "NAME": "admin", "uid": "u1"}}}`, serviceaccount.ErrInvalidKubernetesClaim, `serviceaccount has a member whose name differs from "name" only in case`},
		{"a long s folds to s", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "name\u017fpace": "admin", ` + sa + `}}`, serviceaccount.ErrInvalidKubernetesClaim, `differs from "namespace" only in case`},
		{"uid twice", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u1", "uid": "u9"}}}`, serviceaccount.ErrInvalidKubernetesClaim, `serviceaccount has "uid" twice`},

		// Disagreement with sub.
		{"another namespace", `{` + sub + `, "kubernetes.io": {"namespace": "admin", ` + sa + `}}`, serviceaccount.ErrClaimMismatch, ""},
		{"another name", `{` + sub + `, "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "admin", "uid": "u1"}}}`, serviceaccount.ErrClaimMismatch, ""},
		{"swapped", `{"sub": "system:serviceaccount:billing:payments", "kubernetes.io": {"namespace": "payments", ` + sa + `}}`, serviceaccount.ErrClaimMismatch, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := serviceaccount.KubernetesClaim(claims(t, tc.payload))
			if err == nil {
				t.Fatalf("accepted: %+v", w)
			}
			if w != (serviceaccount.Workload{}) {
				t.Errorf("an error with %+v", w)
			}
			for _, class := range []error{serviceaccount.ErrNoKubernetesClaim, serviceaccount.ErrInvalidSubject, serviceaccount.ErrInvalidKubernetesClaim, serviceaccount.ErrClaimMismatch} {
				if errors.Is(err, class) != (class == tc.class) {
					t.Errorf("errors.Is(err, %v) = %v; err: %v", class, errors.Is(err, class), err)
				}
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestKubernetesClaimNil(t *testing.T) {
	if _, err := serviceaccount.KubernetesClaim(nil); !errors.Is(err, serviceaccount.ErrNoKubernetesClaim) {
		t.Errorf("nil claims: %v", err)
	}
}

// Claims made by hand, not by the Gate, may hold anything in Raw.
func TestKubernetesClaimNotJSON(t *testing.T) {
	for _, raw := range []string{``, ` `, `{"namespace": "payments",`, `{"namespace": "payments"} {}`, `{"namespace": "payments"}]`, `{'namespace': 'payments'}`} {
		c := &middleware.Claims{
			Subject: "system:serviceaccount:payments:billing",
			Raw:     map[string]json.RawMessage{"kubernetes.io": json.RawMessage(raw)},
		}
		if _, err := serviceaccount.KubernetesClaim(c); !errors.Is(err, serviceaccount.ErrInvalidKubernetesClaim) || !strings.Contains(err.Error(), "the claim is not JSON") {
			t.Errorf("%q: %v", raw, err)
		}
	}
}
