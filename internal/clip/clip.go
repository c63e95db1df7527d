// Package clip shortens strings that a client or a remote server chose (a path, a kid,
// an error from a JWKS endpoint) before they reach a log line or an error message.
package clip

import "unicode/utf8"

// String returns s when it is at most n bytes long; otherwise its longest prefix of at
// most n bytes that ends on a whole UTF-8 sequence, followed by "…". A log line never
// holds half a character, which some log pipelines reject whole.
func String(s string, n int) string {
	if len(s) <= max(n, 0) {
		return s
	}
	return Prefix(s, n) + "…"
}

// Prefix returns the longest prefix of s of at most n bytes that ends on a whole UTF-8
// sequence (invalid bytes count as whole), for a caller that marks the cut its own way.
func Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	// Step back over the continuation bytes of a sequence that n splits, at most
	// utf8.UTFMax-1 of them, down to the first byte of s.
	for i := n; i >= 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i]
		}
	}
	return s[:n] // invalid bytes are cut where they are
}
