package sidecar

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/tokengate/tokengate/middleware"
)

// IdentityPrefix is stripped from every request in any spelling, whatever forward.claims
// says, so that a header an upstream trusts can only come from tokengate.
const IdentityPrefix = "x-auth-"

// normalize is how a header name is compared: lower case, '_' as '-'. Some servers
// (CGI and WSGI gateways, nginx with underscores_in_headers) turn X_Auth_Subject into the
// same variable as X-Auth-Subject, so a client could otherwise smuggle one past a
// deletion of the other (oauth2-proxy CVE-2025-64484, docs/standards.md X40).
func normalize(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

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

// identity turns verified claims into the headers an upstream trusts, and removes the
// same headers, in every spelling, from what a client sent.
type identity struct {
	claims []claimHeader   // in claim order
	strip  map[string]bool // normalized names to remove from client requests
}

type claimHeader struct {
	claim, header string
}

func newIdentity(claims map[string]string) *identity {
	id := &identity{strip: map[string]bool{}}
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
	return id
}

// stripInbound deletes every header a client might use to pose as an identity: the
// configured claim headers and everything under IdentityPrefix, in every case and
// with '_' for '-'.
func (id *identity) stripInbound(h http.Header) {
	for name := range h {
		n := normalize(name)
		if id.strip[n] || strings.HasPrefix(n, IdentityPrefix) {
			delete(h, name)
		}
	}
}

// set writes the claim headers of an allowed request. A claim the token lacks sets no
// header.
func (id *identity) set(h http.Header, c *middleware.Claims) {
	for _, ch := range id.claims {
		if v, ok := claimValue(c, ch.claim); ok {
			h[ch.header] = []string{v}
		}
	}
}

// check refuses claims that cannot be forwarded safely: a configured claim whose value
// has control characters (a header injection, or a value an upstream would cut short).
// It runs once per token, before the token is cached (middleware.WithClaimsCheck).
func (id *identity) check(c *middleware.Claims) error {
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
