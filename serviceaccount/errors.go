package serviceaccount

import (
	"errors"
	"fmt"
)

// The classes of failure. Every error this package returns matches exactly one of
// them with errors.Is; its message says which check failed, without quoting the
// token (the Gate logs a subject only as a hash).
var (
	// ErrInvalidSubject: sub is not the user name of a ServiceAccount,
	// system:serviceaccount:<namespace>:<name>, with a valid namespace and name.
	ErrInvalidSubject = errors.New("sub is not system:serviceaccount:<namespace>:<name>")
	// ErrNoKubernetesClaim: the token has no kubernetes.io claim (a legacy Secret-based
	// token, a token of another issuer, or a Gate whose Tokens.KeepClaims leaves the
	// claim out).
	ErrNoKubernetesClaim = errors.New("no kubernetes.io claim")
	// ErrInvalidKubernetesClaim: the kubernetes.io claim is not what Kubernetes
	// writes: a member missing, of the wrong type, or invalid.
	ErrInvalidKubernetesClaim = errors.New("invalid kubernetes.io claim")
	// ErrClaimMismatch: the kubernetes.io claim names another namespace or
	// ServiceAccount than sub.
	ErrClaimMismatch = errors.New("the kubernetes.io claim and sub name different service accounts")
	// ErrOtherIssuer: an allow list's Rule, given the clusters' issuers, saw a token
	// of another issuer, whose sub no cluster vouches for.
	ErrOtherIssuer = errors.New("the token's issuer is not a Kubernetes cluster the allow list trusts")
	// ErrInvalidEntry: an allow-list entry is not namespace/name or namespace/*.
	ErrInvalidEntry = errors.New("invalid allow-list entry")
	// ErrEmptyAllowList: ParseAllow was given no entry. An empty list would refuse
	// every token, which is never what a configuration that names one means.
	ErrEmptyAllowList = errors.New("an allow list needs at least one entry")
)

// EntryError is a malformed allow-list entry: its position in the list, the entry as
// written and the problem. It matches ErrInvalidEntry.
type EntryError struct {
	Index int
	Entry string
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("entry %d %q: %v", e.Index, e.Entry, e.Err)
}

// Unwrap returns the problem, which wraps ErrInvalidEntry.
func (e *EntryError) Unwrap() error { return e.Err }
