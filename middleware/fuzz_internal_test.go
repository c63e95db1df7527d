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

// FuzzObjectMembers: on any JSON object the scanner finds exactly the members
// encoding/json finds (the last of a repeated name wins in both), and uniqueNames says
// whether two names are equal, exactly or under case folding, as strings.EqualFold does
// pairwise. On anything that is not one object the scanner fails.
func FuzzObjectMembers(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[1,{"c":"}"}],"d":"\"","e":{"f":null}}`, `{"a":1,"a":2}`, `{}`, ` { "x" : "y" } `, `{"\u0061":1,"a":2}`, `{"kid":1,"\u212aid":2}`, `{"ſ":1,"S":2}`, `{} {}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) || !json.Valid(data) {
			return
		}
		var want map[string]json.RawMessage
		if json.Unmarshal(data, &want) != nil || want == nil {
			if _, ok := scanObject(nil, data, 0); ok {
				t.Fatalf("split %q, which is not an object", data)
			}
			return
		}
		members, ok := scanObject(nil, data, 0)
		if !ok {
			t.Fatalf("%q: not split", data)
		}
		got := map[string]json.RawMessage{}
		for _, m := range members {
			got[m.name] = m.value
		}
		if len(got) != len(want) {
			t.Fatalf("%q: got %v, want %v", data, got, want)
		}
		for k, v := range want {
			if string(got[k]) != string(v) {
				t.Fatalf("%q: member %q is %s, want %s", data, k, got[k], v)
			}
		}
		if n, _ := countMembers(data); n != len(members) {
			t.Fatalf("%q: %d members split, %d counted", data, len(members), n)
		}
		unique := true
		for i := range members {
			for j := range i {
				if strings.EqualFold(members[i].name, members[j].name) {
					unique = false
				}
			}
		}
		if uniqueNames(members) != unique {
			t.Fatalf("%q: uniqueNames %v, pairwise EqualFold says %v", data, !unique, unique)
		}
	})
}

// FuzzFoldKey: two strings share a fold key exactly when strings.EqualFold says they
// are equal.
func FuzzFoldKey(f *testing.F) {
	for _, p := range [][2]string{{"kid", "\u212aid"}, {"sub", "SUB"}, {"ſ", "s"}, {"ß", "ẞ"}, {"Σ", "ς"}, {"a", "b"}, {"İ", "i"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if !utf8.ValidString(a) || !utf8.ValidString(b) {
			return // names are checked for UTF-8 before they are read
		}
		if (foldKey(a) == foldKey(b)) != strings.EqualFold(a, b) {
			t.Fatalf("%q and %q: keys %q and %q, EqualFold %v", a, b, foldKey(a), foldKey(b), strings.EqualFold(a, b))
		}
	})
}

// FuzzHeaderNames: the header scanner, as checkHeader uses it (16 members at most),
// never panics and, on a JSON object it accepts, finds the names encoding/json finds.
func FuzzHeaderNames(f *testing.F) {
	for _, s := range []string{`{"alg":"RS256","kid":"k"}`, `{"alg":"none","alg":"RS256"}`, `{"\u0061lg":"x"}`, `{"a":[{"b":"}"}]}`, `{`, `{"a":}`, `{"a":1,}`, ``, ` `, `{"a":1} `, `{"a":1}x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return // checkHeader refuses it before scanning
		}
		var scratch [16]member
		members, ok := scanObject(scratch[:0], data, len(scratch))
		if !ok {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil {
			return // not JSON: golang-jwt refuses it next
		}
		for _, mb := range members {
			if _, found := m[mb.name]; !found {
				t.Fatalf("scanner found %q, encoding/json did not in %q", mb.name, data)
			}
		}
		if len(m) > len(members) {
			t.Fatalf("scanner missed names of %q: %v", data, members)
		}
	})
}

// countMembers counts the members of the JSON object in data, which json.Unmarshal has
// already found valid: a map decodes duplicates into one entry, so a count larger than
// the map's length means a name was repeated.
func countMembers(data []byte) (int, error) {
	depth, n := 0, 0
	inString, escaped, empty := false, false, true
	for _, b := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
			continue
		}
		switch b {
		case '"':
			inString = true
			if depth == 1 && empty {
				empty = false
				n = 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			if depth == 1 {
				n++
			}
		}
	}
	if depth != 0 {
		return 0, errNotAnObject
	}
	return n, nil
}
