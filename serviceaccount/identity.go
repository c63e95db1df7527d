package serviceaccount

import (
	"errors"
	"fmt"
	"strings"
)

const (
	// SubjectPrefix begins the user name Kubernetes gives a ServiceAccount, which is
	// the sub of its tokens: system:serviceaccount:<namespace>:<name>.
	SubjectPrefix = "system:serviceaccount:"
	// MaxNamespaceLength is the longest namespace Kubernetes accepts: a namespace is
	// an RFC 1123 DNS label.
	MaxNamespaceLength = 63
	// MaxNameLength is the longest ServiceAccount name Kubernetes accepts: a name is
	// an RFC 1123 DNS subdomain.
	MaxNameLength = 253
	// MaxSubjectLength is the longest sub Parse can accept. A longer one is refused
	// before anything else is read.
	MaxSubjectLength = len(SubjectPrefix) + MaxNamespaceLength + len(":") + MaxNameLength
)

// Identity is a Kubernetes ServiceAccount: its namespace and its name. Parse returns
// only valid ones, which compare with ==.
type Identity struct {
	Namespace string
	Name      string
}

// String returns "namespace/name", as allow lists and kubectl write it.
func (i Identity) String() string { return i.Namespace + "/" + i.Name }

// Subject returns the sub of the identity's tokens,
// "system:serviceaccount:namespace:name".
func (i Identity) Subject() string { return SubjectPrefix + i.Namespace + ":" + i.Name }

// Parse reads the sub of a Kubernetes ServiceAccount token,
// system:serviceaccount:<namespace>:<name>, as Kubernetes writes it and nothing else:
//
//   - at most MaxSubjectLength bytes, checked first;
//   - exactly the prefix system:serviceaccount: (not the group
//     system:serviceaccounts:<namespace>, not system:node:<name>, no other case);
//   - exactly one ':' after the prefix;
//   - a namespace that is an RFC 1123 DNS label, as Kubernetes validates namespaces:
//     1 to 63 bytes of a-z, 0-9 and '-', beginning and ending with a letter or digit;
//   - a name that is an RFC 1123 DNS subdomain, as Kubernetes validates
//     ServiceAccount names: 1 to 253 bytes of a-z, 0-9, '-' and '.', beginning and
//     ending with a letter or digit, every '.' between two letters or digits.
//
// Everything else (upper case, white space, control characters, non-ASCII letters
// that look like ASCII ones, empty parts) is refused with an error that matches
// ErrInvalidSubject. Neither part can hold ':', '/' or '*', so an Identity reads back
// unambiguously both as a sub and as "namespace/name".
func Parse(sub string) (Identity, error) {
	if len(sub) > MaxSubjectLength {
		return Identity{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidSubject, MaxSubjectLength)
	}
	rest, ok := strings.CutPrefix(sub, SubjectPrefix)
	if !ok {
		return Identity{}, fmt.Errorf("%w: it does not begin with %s", ErrInvalidSubject, SubjectPrefix)
	}
	ns, name, ok := strings.Cut(rest, ":")
	if !ok {
		return Identity{}, fmt.Errorf("%w: no ':' between the namespace and the name", ErrInvalidSubject)
	}
	if strings.IndexByte(name, ':') >= 0 {
		return Identity{}, fmt.Errorf("%w: more than one ':' after %s", ErrInvalidSubject, SubjectPrefix)
	}
	if err := checkNamespace(ns); err != nil {
		return Identity{}, fmt.Errorf("%w: namespace: %w", ErrInvalidSubject, err)
	}
	if err := checkName(name); err != nil {
		return Identity{}, fmt.Errorf("%w: name: %w", ErrInvalidSubject, err)
	}
	return Identity{Namespace: ns, Name: name}, nil
}

var errEmpty = errors.New("is empty")

// checkNamespace checks that s is a DNS label as Kubernetes checks namespaces
// (apimachinery's ValidateNamespaceName, IsDNS1123Label):
// [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 bytes.
func checkNamespace(s string) error {
	if err := checkLength(s, MaxNamespaceLength); err != nil {
		return err
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '-' {
			return fmt.Errorf("byte %d is not a lower-case letter, a digit or '-'", i)
		}
	}
	return checkEnds(s)
}

// checkName checks that s is a DNS subdomain as Kubernetes checks ServiceAccount,
// pod and node names (apimachinery's NameIsDNSSubdomain, IsDNS1123Subdomain): labels
// [a-z0-9]([-a-z0-9]*[a-z0-9])? joined by '.', at most 253 bytes in all. Like
// Kubernetes, it puts no limit on one label's length.
func checkName(s string) error {
	if err := checkLength(s, MaxNameLength); err != nil {
		return err
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '-' && c != '.' {
			return fmt.Errorf("byte %d is not a lower-case letter, a digit, '-' or '.'", i)
		}
	}
	if err := checkEnds(s); err != nil {
		return err
	}
	// The ends are letters or digits, so s[i-1] and s[i+1] exist.
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '.' && (!alnum(s[i-1]) || !alnum(s[i+1])) {
			return fmt.Errorf("the '.' at byte %d is not between two letters or digits", i)
		}
	}
	return nil
}

func checkLength(s string, max int) error {
	switch {
	case s == "":
		return errEmpty
	case len(s) > max:
		return fmt.Errorf("is longer than %d bytes", max)
	}
	return nil
}

func checkEnds(s string) error {
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return errors.New("does not begin and end with a lower-case letter or a digit")
	}
	return nil
}

func alnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }
