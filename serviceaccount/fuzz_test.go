package serviceaccount_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/serviceaccount"
)

// The oracle: Kubernetes' own check of a ServiceAccount user name (apiserver's
// serviceaccount.SplitUsername: the prefix, exactly two parts split at ':', then
// apimachinery's ValidateNamespaceName and ValidateServiceAccountName), with the
// regular expressions and lengths of apimachinery's IsDNS1123Label and
// IsDNS1123Subdomain.
var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

func kubernetesSplit(sub string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(sub, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 2 {
		return "", "", false
	}
	ns, name = parts[0], parts[1]
	ok = len(ns) <= 63 && dns1123Label.MatchString(ns) && len(name) <= 253 && dns1123Subdomain.MatchString(name)
	return ns, name, ok
}

// FuzzParse: Parse never panics, accepts exactly what Kubernetes accepts, and what it
// accepts reads back as the same sub.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"system:serviceaccount:payments:billing",
		"system:serviceaccount:a:b",
		"system:serviceaccount:kube-system:replica-set-controller",
		"system:serviceaccount:payments:billing.v2",
		"system:serviceaccount:payments:bill..ing",
		"system:serviceaccount:payments:billing:extra",
		"system:serviceaccount::",
		"system:serviceaccount:Payments:billing",
		"system:serviceaccounts:payments",
		"system:node:node-1",
		"system:serviceaccount:payments:bіlling",
		"system:serviceaccount:payments:billing\r\n",
		"system:serviceaccount:" + strings.Repeat("n", 63) + ":" + strings.Repeat("a", 253),
		"system:serviceaccount:" + strings.Repeat("n", 64) + ":a",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sub string) {
		id, err := serviceaccount.Parse(sub)
		ns, name, want := kubernetesSplit(sub)
		if (err == nil) != want {
			t.Fatalf("Parse(%q): %v; Kubernetes accepts it: %v", sub, err, want)
		}
		if err != nil {
			if id != (serviceaccount.Identity{}) {
				t.Fatalf("Parse(%q) returned %+v with its error", sub, id)
			}
			return
		}
		if id.Namespace != ns || id.Name != name {
			t.Fatalf("Parse(%q) = %+v, Kubernetes reads %q, %q", sub, id, ns, name)
		}
		if "system:serviceaccount:"+id.Namespace+":"+id.Name != sub || id.Subject() != sub {
			t.Fatalf("Parse(%q) = %+v does not read back", sub, id)
		}
		if len(sub) > serviceaccount.MaxSubjectLength {
			t.Fatalf("Parse accepted %d bytes", len(sub))
		}
		// Neither part can hold a separator of sub or of an allow-list entry.
		if strings.ContainsAny(id.Namespace, ":/*") || strings.ContainsAny(id.Name, ":/*") {
			t.Fatalf("Parse(%q) = %+v holds a separator", sub, id)
		}
		// The identity is in an allow list of itself, and of its namespace.
		for _, entry := range []string{id.String(), id.Namespace + "/*"} {
			a, err := serviceaccount.ParseAllow([]string{entry})
			if err != nil || !a.Allows(id) {
				t.Fatalf("ParseAllow(%q): %v; allows %+v: %v", entry, err, id, err == nil && a.Allows(id))
			}
		}
	})
}

// FuzzAllowEntry: an entry is accepted exactly when it is namespace/* or
// namespace/name with a valid namespace and name.
func FuzzAllowEntry(f *testing.F) {
	for _, s := range []string{"payments/billing", "payments/*", "*/*", "*/billing", "payments/bill*", "payments", "payments/billing/x", " payments/billing", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		a, err := serviceaccount.ParseAllow([]string{entry})
		ns, name, _ := strings.Cut(entry, "/")
		want := dns1123Label.MatchString(ns) && len(ns) <= 63 &&
			(name == "*" || dns1123Subdomain.MatchString(name) && len(name) <= 253)
		if (err == nil) != want {
			t.Fatalf("ParseAllow(%q): %v; want accepted: %v", entry, err, want)
		}
		if err != nil {
			return
		}
		probe := serviceaccount.Identity{Namespace: ns, Name: name}
		if name == "*" {
			probe.Name = "any"
		}
		if !a.Allows(probe) {
			t.Fatalf("ParseAllow(%q) does not allow %+v", entry, probe)
		}
		if a.Allows(serviceaccount.Identity{Namespace: ns + "x", Name: probe.Name}) {
			t.Fatalf("ParseAllow(%q) allows another namespace", entry)
		}
	})
}

// FuzzKubernetesClaim: any kubernetes.io claim is read without a panic, and one that
// is accepted reads the same with encoding/json (which matches names regardless of
// case and keeps the last of two: the claim may have neither).
func FuzzKubernetesClaim(f *testing.F) {
	var seed map[string]json.RawMessage
	if err := json.Unmarshal([]byte(projected), &seed); err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(seed["kubernetes.io"]),
		`{"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u1"}}`,
		`{"namespace": "payments", "Namespace": "x", "serviceaccount": {"name": "billing", "uid": "u1"}}`,
		`{"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u1", "uid": "u2"}}`,
		`{"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u1"}, "pod": null}`,
		`{"namespace": "pay\u006dents", "serviceaccount": {"name": "billing", "uid": "u\"1"}, "x": [{"}": "]"}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, claim string) {
		c := &middleware.Claims{
			Subject: "system:serviceaccount:payments:billing",
			Raw:     map[string]json.RawMessage{"kubernetes.io": json.RawMessage(claim)},
		}
		w, err := serviceaccount.KubernetesClaim(c)
		if err != nil {
			return
		}
		type ref struct{ Name, UID string }
		var k struct {
			Namespace      string
			ServiceAccount ref
			Pod, Node      ref
		}
		if err := json.Unmarshal([]byte(claim), &k); err != nil {
			t.Fatalf("%s: accepted, but encoding/json: %v", claim, err)
		}
		if k.Namespace != w.ServiceAccount.Namespace || k.ServiceAccount.Name != w.ServiceAccount.Name ||
			k.ServiceAccount.UID != w.ServiceAccountUID ||
			k.Pod != ref(w.Pod) || k.Node != ref(w.Node) {
			t.Fatalf("%s: read %+v, encoding/json %+v", claim, w, k)
		}
	})
}
