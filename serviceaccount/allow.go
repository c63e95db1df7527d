package serviceaccount

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tokengate/tokengate/middleware"
)

// AllowList is a set of ServiceAccounts, made by ParseAllow. Its methods are safe for
// concurrent use; a nil *AllowList allows nothing.
type AllowList struct {
	exact      map[Identity]struct{}
	namespaces map[string]struct{} // every ServiceAccount of these namespaces
}

// ParseAllow makes an AllowList of entries, each one of
//
//   - "namespace/name": that ServiceAccount;
//   - "namespace/*": every ServiceAccount of the namespace.
//
// A namespace and a name follow Parse's rules (no white space, no upper case, no
// other wildcard: neither "*/name" nor "*" nor "payments/bill*"). ParseAllow reports
// every malformed or repeated entry at once: the error joins an *EntryError per
// entry, each matching ErrInvalidEntry. An empty list is ErrEmptyAllowList.
func ParseAllow(entries []string) (*AllowList, error) {
	if len(entries) == 0 {
		return nil, ErrEmptyAllowList
	}
	a := &AllowList{exact: map[Identity]struct{}{}, namespaces: map[string]struct{}{}}
	seen := make(map[string]int, len(entries))
	var errs []error
	for i, e := range entries {
		if err := a.add(e); err != nil {
			errs = append(errs, &EntryError{Index: i, Entry: e, Err: err})
			continue
		}
		if j, dup := seen[e]; dup {
			errs = append(errs, &EntryError{Index: i, Entry: e, Err: fmt.Errorf("%w: entry %d is the same", ErrInvalidEntry, j)})
			continue
		}
		seen[e] = i
	}
	if errs != nil {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

func (a *AllowList) add(e string) error {
	ns, name, ok := strings.Cut(e, "/")
	if !ok {
		return fmt.Errorf("%w: not namespace/name or namespace/*", ErrInvalidEntry)
	}
	if ns == "*" {
		return fmt.Errorf("%w: the namespace cannot be a wildcard", ErrInvalidEntry)
	}
	if err := checkNamespace(ns); err != nil {
		return fmt.Errorf("%w: namespace: %w", ErrInvalidEntry, err)
	}
	if name == "*" {
		a.namespaces[ns] = struct{}{}
		return nil
	}
	if strings.IndexByte(name, '/') >= 0 {
		return fmt.Errorf("%w: more than one '/'", ErrInvalidEntry)
	}
	if err := checkName(name); err != nil {
		return fmt.Errorf("%w: name: %w", ErrInvalidEntry, err)
	}
	a.exact[Identity{Namespace: ns, Name: name}] = struct{}{}
	return nil
}

// Allows reports whether the list holds id, by name or by its namespace's wildcard.
func (a *AllowList) Allows(id Identity) bool {
	if a == nil {
		return false
	}
	if _, ok := a.namespaces[id.Namespace]; ok {
		return true
	}
	_, ok := a.exact[id]
	return ok
}

// Rule returns a middleware.Rule, named name, that holds for a token whose sub is the
// user name of a ServiceAccount the list allows. A sub that Parse refuses (a user's
// token, a group name, anything malformed) denies the request with Parse's error, so
// that the Gate's log line says why; a valid ServiceAccount that the list does not
// hold makes the rule false. Either way the Gate answers 403 with reason "rule" and
// logs the rule's name.
//
// The rule reads sub, which only a Kubernetes cluster vouches for: an issuer that
// lets its clients choose their sub could otherwise name any ServiceAccount. Given
// issuers (the exact iss of the clusters' ServiceAccount issuers), the rule refuses,
// with ErrOtherIssuer, a token of any other issuer; without them it trusts that only
// the clusters' tokens reach it, so put it only on a Route or an Issuer where that
// holds.
func (a *AllowList) Rule(name string, issuers ...string) middleware.Rule {
	r := &allowRule{name: name, list: a}
	if len(issuers) > 0 {
		r.issuers = make(map[string]struct{}, len(issuers))
		for _, iss := range issuers {
			r.issuers[iss] = struct{}{}
		}
	}
	return r
}

type allowRule struct {
	name    string
	list    *AllowList
	issuers map[string]struct{} // nil: any issuer
}

var _ middleware.Rule = (*allowRule)(nil)

func (r *allowRule) Name() string { return r.name }

func (r *allowRule) Allow(_ *http.Request, c *middleware.Claims) (bool, error) {
	if c == nil {
		return false, fmt.Errorf("%w: no claims", ErrInvalidSubject)
	}
	if r.issuers != nil {
		if _, ok := r.issuers[c.Issuer]; !ok {
			return false, ErrOtherIssuer
		}
	}
	id, err := Parse(c.Subject)
	if err != nil {
		return false, err
	}
	return r.list.Allows(id), nil
}

// RequireWorkload returns a middleware.ClaimsCheck for the Issuer of a Kubernetes
// cluster (middleware.Issuer.Checks): it refuses a token unless its sub is a
// ServiceAccount's and its kubernetes.io claim is what Kubernetes writes and names the
// same ServiceAccount (KubernetesClaim). The Gate runs it once per token, before the
// token is cached, and refuses with 401 invalid_token, reason claims: a token of the
// cluster that is not a workload's is not a token this API takes.
func RequireWorkload() middleware.ClaimsCheck { return workloadCheck{} }

type workloadCheck struct{}

func (workloadCheck) CheckClaims(c *middleware.Claims) error {
	_, err := KubernetesClaim(c)
	return err
}
