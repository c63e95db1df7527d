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
// The rule reads sub alone: it trusts that only a Kubernetes cluster's tokens reach
// it, so put it on a Route or an Issuer whose issuers are clusters (an issuer that
// lets its clients choose their sub could otherwise name any ServiceAccount).
func (a *AllowList) Rule(name string) middleware.Rule {
	return &allowRule{name: name, list: a}
}

type allowRule struct {
	name string
	list *AllowList
}

var _ middleware.Rule = (*allowRule)(nil)

func (r *allowRule) Name() string { return r.name }

func (r *allowRule) Allow(_ *http.Request, c *middleware.Claims) (bool, error) {
	if c == nil {
		return false, fmt.Errorf("%w: no claims", ErrInvalidSubject)
	}
	id, err := Parse(c.Subject)
	if err != nil {
		return false, err
	}
	return r.list.Allows(id), nil
}
