package middleware

import (
	"errors"
	"net/http"
	"strings"
)

var (
	errTwoHeaders     = errors.New("more than one Authorization header")
	errTwoSources     = errors.New("the token is sent in more than one way")
	errEmptyBearer    = errors.New("the Bearer (or DPoP) scheme has no token")
	errBadSeparator   = errors.New("a tab separates the scheme from the token")
	errTokenSyntax    = errors.New("the token is not a b64token (RFC 6750 §2.1)")
	errRepeatedSource = errors.New("the token cookie or query parameter is repeated")
)

// extract returns the bearer token of a request (docs/middleware.md, Extract;
// docs/standards.md B1–B10, RFC 6750 §2.1 and §3.1): the Authorization header with the
// Bearer scheme (case-insensitive), one or more spaces, one token; or, when configured,
// a cookie or a query parameter. A header with another scheme (Basic, Digest...) counts
// as no token (RFC 6750 §3.1). The result is "" with no error when there is no token; a
// repeated token, or tokens from two sources, is malformed_request. The token's
// characters are not checked here but by checkSyntax, after the cache: a token found
// there was checked when it was verified, and scanning 1 KiB of base64 on every request
// is most of a cached decision's cost.
//
// With DPoP on (dpopOK), the DPoP scheme (RFC 9449 §7.1) is read as well, and isDPoP
// says the token came with it; without, DPoP is another scheme, so no token.
func extract(r *http.Request, cookie, query string, dpopOK bool) (token string, isDPoP bool, e *Error) {
	var sources int
	switch vals := r.Header["Authorization"]; len(vals) {
	case 0:
	case 1:
		t, d, err := credentials(vals[0], dpopOK)
		if err != nil {
			return "", false, deny(ReasonMalformedRequest, err)
		}
		if t != "" {
			token, isDPoP, sources = t, d, 1
		}
	default:
		return "", false, deny(ReasonMalformedRequest, errTwoHeaders)
	}
	if cookie != "" {
		var found []string
		for _, c := range r.CookiesNamed(cookie) {
			found = append(found, c.Value)
		}
		switch len(found) {
		case 0:
		case 1:
			if found[0] == "" {
				return "", false, deny(ReasonMalformedRequest, errTokenSyntax)
			}
			token, sources = found[0], sources+1
		default:
			return "", false, deny(ReasonMalformedRequest, errRepeatedSource)
		}
	}
	if query != "" {
		switch vals := r.URL.Query()[query]; len(vals) {
		case 0:
		case 1:
			if vals[0] == "" {
				return "", false, deny(ReasonMalformedRequest, errTokenSyntax)
			}
			token, sources = vals[0], sources+1
		default:
			return "", false, deny(ReasonMalformedRequest, errRepeatedSource)
		}
	}
	if sources > 1 {
		return "", false, deny(ReasonMalformedRequest, errTwoSources)
	}
	return token, isDPoP, nil
}

// bearer reads one Authorization header value. It returns "" and no error for another
// scheme.
func bearer(v string) (string, error) {
	t, _, err := credentials(v, false)
	return t, err
}

// credentials reads one Authorization header value with the Bearer scheme, or with
// the DPoP scheme when dpopOK. It returns "" and no error for another scheme.
func credentials(v string, dpopOK bool) (token string, isDPoP bool, err error) {
	i := strings.IndexAny(v, " \t")
	scheme := v
	if i >= 0 {
		scheme = v[:i]
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
	case dpopOK && strings.EqualFold(scheme, "DPoP"):
		isDPoP = true
	default:
		return "", false, nil // no credentials, or another scheme
	}
	if i < 0 {
		return "", false, errEmptyBearer
	}
	if v[i] == '\t' {
		return "", false, errBadSeparator
	}
	t := strings.TrimLeft(v[i:], " ")
	if t == "" {
		return "", false, errEmptyBearer
	}
	return t, isDPoP, nil
}

// checkSyntax refuses a token that is not a b64token (RFC 6750 §2.1): a space, a comma,
// a second token in the header.
func checkSyntax(token string) *Error {
	if !isB64Token(token) {
		return deny(ReasonMalformedRequest, errTokenSyntax)
	}
	return nil
}

// b64tokenChars marks the characters of RFC 6750's b64token before its trailing '='s.
var b64tokenChars = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~+/" {
		t[c] = true
	}
	return t
}()

// isB64Token reports whether s is 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && b64tokenChars[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(s) && s[i] == '=' {
		i++
	}
	return i == len(s)
}
