package middleware

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzBearer: reading an Authorization value never panics, and a token it returns is
// taken from the value (its syntax is checked after the cache, by checkSyntax).
func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer  a", "Bearer", "Bearer\tabc", "Basic dTpw", "Bearer a,b", "Bearer a b", "", "Bearer ===", "BEARER ab=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tok, err := bearer(v)
		if err != nil && tok != "" {
			t.Fatalf("token %q with error %v", tok, err)
		}
		if tok != "" && !strings.HasSuffix(v, tok) {
			t.Fatalf("%q gave token %q", v, tok)
		}
	})
}

// FuzzClaims: decoding a payload never panics; a payload it accepts is a JSON object
// without duplicate names.
func FuzzClaims(f *testing.F) {
	for _, s := range []string{`{"iss":"a","exp":1}`, `null`, `[]`, `{"sub":"a","sub":"b"}`, `{"aud":["a",1]}`, `{"exp":"1"}`, `{"a":{"b":[1,{"c":"\"}"}]}}`, "{\"x\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Claims
		if err := c.UnmarshalJSON(data); err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil || m == nil {
			t.Fatalf("accepted %q, which is not a JSON object", data)
		}
		if n, _ := countMembers(data); n != len(m) {
			t.Fatalf("accepted %q with duplicate members", data)
		}
	})
}

// FuzzHeaderNames: the header scanner never panics and, on a JSON object it accepts,
// finds the names encoding/json finds.
func FuzzHeaderNames(f *testing.F) {
	for _, s := range []string{`{"alg":"RS256","kid":"k"}`, `{"alg":"none","alg":"RS256"}`, `{"\u0061lg":"x"}`, `{"a":[{"b":"}"}]}`, `{`, `{"a":}`, `{"a":1,}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return // checkHeader refuses it before scanning
		}
		names, _, ok := headerNames(data)
		if !ok {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil {
			return // not JSON: golang-jwt refuses it next
		}
		for _, n := range names {
			if _, found := m[n]; !found {
				t.Fatalf("scanner found %q, encoding/json did not in %q", n, data)
			}
		}
		if len(m) > len(names) {
			t.Fatalf("scanner missed names of %q: %v", data, names)
		}
	})
}
