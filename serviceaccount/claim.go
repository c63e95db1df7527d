package serviceaccount

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tokengate/tokengate/middleware"
)

// ClaimName is the private claim in which Kubernetes describes the workload a
// ServiceAccount token was issued for.
const ClaimName = "kubernetes.io"

// MaxUIDLength bounds a uid in the kubernetes.io claim. Kubernetes' uids are UUIDs
// (36 bytes); the bound leaves room for other generators and none for abuse.
const MaxUIDLength = 128

// Ref names a Kubernetes object: its name and uid. The uid tells apart two objects
// that had the same name at different times.
type Ref struct {
	Name string
	UID  string
}

// Workload is what a ServiceAccount token says about the workload it was issued for:
// its sub and its kubernetes.io claim, checked against each other.
type Workload struct {
	// ServiceAccount is the token's ServiceAccount, from sub; the claim names the same.
	ServiceAccount Identity
	// ServiceAccountUID is the ServiceAccount object's uid, which changes when the
	// ServiceAccount is deleted and created again under the same name.
	ServiceAccountUID string
	// Pod is the pod the token is bound to (a projected token); zero when the token
	// is bound to none.
	Pod Ref
	// Node is the node the token's pod runs on (Kubernetes 1.30 and later), or the
	// node the token is bound to; zero when the claim names none.
	Node Ref
}

// KubernetesClaim reads the workload a verified ServiceAccount token was issued
// for: sub (see Parse) and the kubernetes.io claim that Kubernetes writes,
//
//	{"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "..."},
//	 "pod": {"name": "billing-7d9f", "uid": "..."}, "node": {"name": "node-1", "uid": "..."}}
//
// The claim must be an object; namespace a string; serviceaccount an object with
// name and uid; pod and node, when present, objects with name and uid. Names must
// be what Kubernetes accepts (a DNS label for the namespace, DNS subdomains for the
// others), uids 1 to MaxUIDLength bytes of printable ASCII without space. Other
// members (secret, warnafter, attestations...) are ignored; a member that is read
// must appear once, and no other member may differ from it only in case (so that no
// decoder that folds case reads another value). The claim's namespace and
// ServiceAccount name must equal sub's, or the token is refused with
// ErrClaimMismatch.
//
// A Gate keeps the claim only if Tokens.KeepClaims is nil or names "kubernetes.io".
func KubernetesClaim(c *middleware.Claims) (Workload, error) {
	if c == nil {
		return Workload{}, ErrNoKubernetesClaim
	}
	id, err := Parse(c.Subject)
	if err != nil {
		return Workload{}, err
	}
	raw, ok := c.Raw[ClaimName]
	if !ok {
		return Workload{}, ErrNoKubernetesClaim
	}
	if !json.Valid(raw) {
		return Workload{}, invalidClaim(errors.New("the claim is not JSON"))
	}
	k, err := members("the claim", raw, "namespace", "serviceaccount", "pod", "node")
	if err != nil {
		return Workload{}, invalidClaim(err)
	}
	ns, err := stringMember("the claim", k, "namespace")
	if err != nil {
		return Workload{}, invalidClaim(err)
	}
	if err := checkNamespace(ns); err != nil {
		return Workload{}, invalidClaim(fmt.Errorf("namespace: %w", err))
	}
	sa, err := ref(k, "serviceaccount", true)
	if err != nil {
		return Workload{}, invalidClaim(err)
	}
	w := Workload{ServiceAccount: id, ServiceAccountUID: sa.UID}
	if w.Pod, err = ref(k, "pod", false); err != nil {
		return Workload{}, invalidClaim(err)
	}
	if w.Node, err = ref(k, "node", false); err != nil {
		return Workload{}, invalidClaim(err)
	}
	if ns != id.Namespace || sa.Name != id.Name {
		return Workload{}, ErrClaimMismatch
	}
	return w, nil
}

func invalidClaim(err error) error { return fmt.Errorf("%w: %w", ErrInvalidKubernetesClaim, err) }

// ref reads the member name of the claim k, an object {"name": ..., "uid": ...}; a
// zero Ref when it is absent and not required.
func ref(k map[string][]byte, name string, required bool) (Ref, error) {
	raw, ok := k[name]
	if !ok {
		if required {
			return Ref{}, fmt.Errorf("the claim has no %s", name)
		}
		return Ref{}, nil
	}
	m, err := members(name, raw, "name", "uid")
	if err != nil {
		return Ref{}, err
	}
	var r Ref
	if r.Name, err = stringMember(name, m, "name"); err != nil {
		return Ref{}, err
	}
	if r.UID, err = stringMember(name, m, "uid"); err != nil {
		return Ref{}, err
	}
	if err := checkName(r.Name); err != nil {
		return Ref{}, fmt.Errorf("%s.name: %w", name, err)
	}
	if err := checkUID(r.UID); err != nil {
		return Ref{}, fmt.Errorf("%s.uid: %w", name, err)
	}
	return r, nil
}

// members returns the members of the given names of raw, a JSON object called what in
// errors. raw must be valid JSON (json.Valid), as the values inside a valid claim are.
// It refuses a name that appears twice, and a member whose name differs from one of
// them only in case: encoding/json matches struct fields regardless of case, so
// {"namespace": "a", "Namespace": "b"} could read differently elsewhere.
//
// It scans raw by hand: a json.Decoder costs four times as much, and a claim header
// reads the claim on every request.
func members(what string, raw []byte, names ...string) (map[string][]byte, error) {
	i := skipSpace(raw, 0)
	if i == len(raw) || raw[i] != '{' {
		return nil, fmt.Errorf("%s is not a JSON object", what)
	}
	out := make(map[string][]byte, len(names))
	// raw is one valid JSON object: every index below is in range, and the scan
	// meets each token where the grammar puts it.
	for i = skipSpace(raw, i+1); raw[i] != '}'; {
		end := skipString(raw, i)
		key := raw[i:end]
		i = skipSpace(raw, skipSpace(raw, end)+1) // past the ':'
		end = skipValue(raw, i)
		value := raw[i:end]
		if i = skipSpace(raw, end); raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
		name, ok := unquote(key)
		if !ok {
			return nil, fmt.Errorf("%s is not a JSON object", what)
		}
		for _, n := range names {
			if !strings.EqualFold(name, n) {
				continue
			}
			if name != n {
				return nil, fmt.Errorf("%s has a member whose name differs from %q only in case", what, n)
			}
			if _, dup := out[n]; dup {
				return nil, fmt.Errorf("%s has %q twice", what, n)
			}
			out[n] = value
		}
	}
	return out, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that begins at b[i], a '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index after the value that begins at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	// A number, true, false or null.
	for i < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[i])) {
		i++
	}
	return i
}

// unquote decodes the JSON string v.
func unquote(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	if !bytes.ContainsRune(v, '\\') {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// stringMember reads the member name of the object m, called what in errors: a JSON
// string, never null.
func stringMember(what string, m map[string][]byte, name string) (string, error) {
	v, ok := m[name]
	if !ok {
		return "", fmt.Errorf("%s has no %s", what, name)
	}
	s, ok := unquote(v)
	if !ok {
		if what == "the claim" {
			return "", fmt.Errorf("%s is not a string", name)
		}
		return "", fmt.Errorf("%s.%s is not a string", what, name)
	}
	return s, nil
}

// checkUID checks that a uid could go in a header or a log line as it is: 1 to
// MaxUIDLength bytes of printable ASCII without space.
func checkUID(s string) error {
	if err := checkLength(s, MaxUIDLength); err != nil {
		return err
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("byte %d is not printable ASCII", i)
		}
	}
	return nil
}
