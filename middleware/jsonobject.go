package middleware

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file is the one place where tokengate reads the JSON of a token itself: the
// members of the JOSE header (checkHeader) and of the payload (Claims.UnmarshalJSON),
// and whether two of their names could be read as one. A fix to either belongs here.
//
// The scanner is not a validating parser: the payload has passed json.Valid before it,
// and golang-jwt decodes the header fully after it, refusing what is not JSON. It must
// be right on valid JSON and never panic on anything else; FuzzObjectMembers and
// FuzzHeaderNames hold it to encoding/json, TestScanObject to its edges.

// member is one member of a JSON object: its name with escapes decoded, and its value
// as sent.
type member struct {
	name  string
	value []byte
}

// scanObject appends the members of the JSON object data to dst. ok is false when data
// is not one object, or holds more than limit members (limit > 0).
func scanObject(dst []member, data []byte, limit int) (members []member, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return dst, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return dst, skipSpace(data, i+1) == len(data)
	}
	for n := 1; ; n++ {
		if limit > 0 && n > limit {
			return dst, false
		}
		name, next, ok := readString(data, skipSpace(data, i))
		if !ok {
			return dst, false
		}
		i = skipSpace(data, next)
		if i >= len(data) || data[i] != ':' {
			return dst, false
		}
		start := skipSpace(data, i+1)
		end, ok := skipValue(data, start)
		if !ok {
			return dst, false
		}
		dst = append(dst, member{name: name, value: data[start:end]})
		i = skipSpace(data, end)
		if i >= len(data) {
			return dst, false
		}
		switch data[i] {
		case ',':
			i++
		case '}':
			return dst, skipSpace(data, i+1) == len(data)
		default:
			return dst, false
		}
	}
}

// uniqueNames reports whether no two members share a name, exactly or under case
// folding: "sub" and "SUB", "kid" and "\u212aid" (the Kelvin sign), which
// case-insensitive decoders (Go's struct decoding among them) would read as one member,
// so that another parser could read a different claim or header than tokengate did.
// It takes time linear in the members: a token's payload is read before its signature
// is checked, so a client must not be able to make this quadratic.
func uniqueNames(members []member) bool {
	seen := make(map[string]struct{}, len(members))
	for _, m := range members {
		k := foldKey(m.name)
		if _, dup := seen[k]; dup {
			return false
		}
		seen[k] = struct{}{}
	}
	return true
}

// foldKey maps s to a key that another string shares exactly when strings.EqualFold
// says the two are equal: each rune replaced by one fixed member of its simple case
// folding orbit (the lower-case ASCII letter where the orbit has one, else its least
// rune). A name without upper-case ASCII or non-ASCII bytes is its own key.
func foldKey(s string) string {
	if !foldable(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

func foldRune(r rune) rune {
	least := r
	for f := r; ; {
		if 'a' <= f && f <= 'z' {
			return f
		}
		least = min(least, f)
		if f = unicode.SimpleFold(f); f == r {
			return least
		}
	}
}

// foldable reports whether s has a byte that case folding could change: an upper-case
// ASCII letter or a non-ASCII byte.
func foldable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return true
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// readString reads the JSON string starting at b[i], decoding escapes.
func readString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch {
		case escaped:
			escaped = false
		case b[j] == '\\':
			escaped = true
		case b[j] == '"':
			s, ok := unquote(b[i : j+1])
			return s, j + 1, ok
		}
	}
	return "", len(b), false
}

// unquote decodes a JSON string value. A string without escapes is its bytes between
// the quotes; one with escapes is decoded (and checked) by encoding/json.
func unquote(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	if !bytes.Contains(v, []byte{'\\'}) {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// skipValue skips one JSON value starting at b[i].
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		_, next, ok := readString(b, i)
		return next, ok
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				_, next, ok := readString(b, j)
				if !ok {
					return j, false
				}
				j = next - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return len(b), false
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
			j++
		}
		return j, j > i
	}
}
