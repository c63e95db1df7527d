package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/tokengate/tokengate/internal/headername"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/rules"
)

// MaxValueBytes bounds a forward.values header: a longer value is not sent.
const MaxValueBytes = 8 << 10

// IdentityPrefix is stripped from every request in any spelling, whatever forward.claims
// says, so that a header an upstream trusts can only come from tokengate.
const IdentityPrefix = "x-auth-"

// normalize is how a header name is compared: lower case, '_' as '-' (headername.Key).
func normalize(name string) string { return headername.Key(name) }

// reservedHeader reports whether a claim may not be forwarded under this name: headers
// that the proxy or HTTP itself manages.
func reservedHeader(name string) bool {
	switch normalize(name) {
	case "authorization", "proxy-authorization", "cookie", "host", "connection", "keep-alive",
		"te", "trailer", "transfer-encoding", "upgrade", "proxy-connection", "content-length",
		"content-type", "content-encoding", "forwarded", "x-forwarded-for", "x-forwarded-host",
		"x-forwarded-proto", "via", "expect":
		return true
	}
	return false
}

// Identity turns verified claims into the headers an upstream trusts (forward.claims
// and forward.values), and removes the same headers, in every spelling, from what a
// client sent. The sidecar forwards them with an allowed request; a gateway's decision
// service answers with them. Build it with Loaded.Identity; it is safe for concurrent
// use, and never changes once built.
type Identity struct {
	claims []claimHeader   // in claim order
	values []valueHeader   // in the file's order
	kube   *kubeHeaders    // forward.kubernetes; nil without an issuer with kubernetes
	strip  map[string]bool // normalized names to remove from client requests
}

type claimHeader struct {
	claim, header string
}

// valueHeader is a forward.values header: its canonical name and its compiled
// expression (rules.ClaimsOnly).
type valueHeader struct {
	header string
	value  *rules.Value
}

// Identity returns the identity headers of this configuration (forward.claims,
// forward.values and, with an issuer of kind kubernetes, forward.kubernetes), made
// once per Loaded.
func (l *Loaded) Identity() *Identity {
	l.identityOnce.Do(func() {
		l.identity = newIdentity(l.Forward.Claims, l.values...)
		if k := l.kube; k != nil {
			l.identity.kube = k
			for _, h := range []string{k.namespace, k.serviceAccount} {
				if h != "" {
					l.identity.strip[normalize(h)] = true
				}
			}
		}
	})
	return l.identity
}

func newIdentity(claims map[string]string, values ...valueHeader) *Identity {
	id := &Identity{strip: map[string]bool{}}
	names := make([]string, 0, len(claims))
	for c := range claims {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, c := range names {
		h := http.CanonicalHeaderKey(claims[c])
		id.claims = append(id.claims, claimHeader{claim: c, header: h})
		id.strip[normalize(h)] = true
	}
	id.values = append(id.values, values...)
	for _, v := range values {
		id.strip[normalize(v.header)] = true
	}
	return id
}

// Headers returns the names of the headers Set may write, canonical: those of
// forward.claims in the order of their claims' names, then those of forward.values in
// the file's order, then forward.kubernetes' namespace and ServiceAccount. The slice
// is the caller's own.
func (id *Identity) Headers() []string {
	names := make([]string, 0, len(id.claims)+len(id.values)+2)
	for _, ch := range id.claims {
		names = append(names, ch.header)
	}
	for _, v := range id.values {
		names = append(names, v.header)
	}
	if k := id.kube; k != nil {
		for _, h := range []string{k.namespace, k.serviceAccount} {
			if h != "" {
				names = append(names, h)
			}
		}
	}
	return names
}

// StripInbound deletes every header a client might use to pose as an identity: the
// configured claim and value headers and everything under IdentityPrefix, in every
// case and with '_' for '-'. The sidecar does it to every request, public routes and
// shadow mode included, before it sets any.
func (id *Identity) StripInbound(h http.Header) {
	for name := range h {
		n := normalize(name)
		if id.strip[n] || strings.HasPrefix(n, IdentityPrefix) {
			delete(h, name)
		}
	}
}

// Set writes the claim and value headers of an allowed request, from its verified
// claims, and, for a token of an issuer of kind kubernetes, the namespace and
// ServiceAccount headers (forward.kubernetes). A claim the token lacks sets no header. How claims are written:
// docs/configuration.md, "What the upstream receives". A value that cannot be computed
// (a claim it reads is missing or of another type, the cost limit), or that could not
// be sent whole (a control character, more than MaxValueBytes), sets no header either:
// it never denies the request, and what a client sent under that name is stripped
// anyway.
func (id *Identity) Set(h http.Header, c *middleware.Claims) {
	for _, ch := range id.claims {
		if v, ok := claimValue(c, ch.claim); ok {
			h[ch.header] = []string{v}
		}
	}
	for _, vh := range id.values {
		// nil: a value reads claims only (rules.ClaimsOnly); Eval refuses control
		// characters.
		if v, err := vh.value.Eval(nil, c); err == nil && len(v) <= MaxValueBytes {
			h[vh.header] = []string{v}
		}
	}
	if id.kube != nil {
		id.kube.set(h, c)
	}
}

// Check refuses claims that cannot be forwarded safely: a configured claim whose value
// has control characters (a header injection, or a value an upstream would cut short).
// Give it to the Gate (middleware.Options.ClaimsChecks), so that it runs once per
// token, before the token is cached, and such a token is denied with reason claims.
func (id *Identity) Check(c *middleware.Claims) error {
	for _, ch := range id.claims {
		items, _, ok := claimItems(c, ch.claim)
		if !ok {
			continue
		}
		for _, raw := range items {
			for i := 0; i < len(raw); i++ {
				if b := raw[i]; b < 0x20 || b == 0x7f {
					return fmt.Errorf("claim %q holds control characters and cannot be forwarded in %s", ch.claim, ch.header)
				}
			}
		}
	}
	return nil
}

// claimValue renders a claim for a header so that the upstream can read back exactly
// what the token said, and nothing else. A claim is a list of items: a string is one
// item, an array's members are items (strings as themselves, other values as compact
// JSON), a number, boolean or object is one item as compact JSON. Items are joined by
// ',' and each is percent-encoded where it holds ',', '%', a control character or a
// byte that is not ASCII, so that ["eng,admins"] (one group, eng%2Cadmins) and
// ["eng","admins"] (two, eng,admins) never read alike, and the header is one safe
// field. An upstream splits at ',' and percent-decodes each item (a URL path unescape).
//
// The scope claim is the exception: its items are scope-tokens (RFC 6749 §3.3, which
// middleware checks: printable ASCII without space, '"' or '\'), joined by a space as
// in OAuth's scope parameter; only '%' needs encoding there.
func claimValue(c *middleware.Claims, claim string) (string, bool) {
	items, sep, ok := claimItems(c, claim)
	if !ok {
		return "", false
	}
	var b strings.Builder
	for i, it := range items {
		if i > 0 {
			b.WriteByte(sep)
		}
		for j := 0; j < len(it); j++ {
			ch := it[j]
			if ch < 0x20 || ch >= 0x7f || ch == '%' || ch == ',' && sep == ',' {
				fmt.Fprintf(&b, "%%%02X", ch)
				continue
			}
			b.WriteByte(ch)
		}
	}
	return b.String(), true
}

// claimItems is a claim as a list of items and their separator: the scopes (whichever
// claim held them) separated by ' '; otherwise a string as one item, an array's
// members, or any other value as its compact JSON, separated by ','.
func claimItems(c *middleware.Claims, claim string) ([]string, byte, bool) {
	if claim == "scope" {
		if len(c.Scopes) == 0 {
			return nil, ' ', false
		}
		return c.Scopes, ' ', true
	}
	raw, ok := c.Raw[claim]
	if !ok || string(raw) == "null" {
		return nil, ',', false
	}
	switch raw[0] {
	case '"':
		s, ok := c.StringClaim(claim)
		return []string{s}, ',', ok
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil, ',', false
		}
		parts := make([]string, 0, len(items))
		for _, it := range items {
			var s string
			if json.Unmarshal(it, &s) == nil {
				parts = append(parts, s)
			} else {
				parts = append(parts, compact(it))
			}
		}
		return parts, ',', true
	}
	return []string{compact(raw)}, ',', true
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
