package middleware

import (
	"fmt"
	"strings"
	"testing"
)

// What the scanner refuses and accepts, at the edges a fuzzer reaches only by luck.
func TestScanObject(t *testing.T) {
	members := func(n int) string {
		var parts []string
		for i := range n {
			parts = append(parts, fmt.Sprintf(`"m%d":%d`, i, i))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	for _, tc := range []struct {
		in    string
		limit int
		ok    bool
		names string
	}{
		{`{}`, 0, true, ""},
		{` { } `, 0, true, ""},
		{`{"a":1}`, 0, true, "a"},
		{`{"a" : "x" , "b":[1,{"c":"}"}] }`, 0, true, "a b"},
		{`{"\u0061":true,"b":null}`, 0, true, "a b"},
		{members(16), 16, true, ""},
		{members(17), 16, false, ""},
		{members(17), 0, true, ""},
		{``, 0, false, ""},
		{` `, 0, false, ""},
		{`[]`, 0, false, ""},
		{`{`, 0, false, ""},
		{`{"a"`, 0, false, ""},
		{`{"a":1`, 0, false, ""},
		{`{"a":}`, 0, false, ""},
		{`{"a":,"b":1}`, 0, false, ""},
		{`{"a" 1}`, 0, false, ""},
		{`{"a":1,}`, 0, false, ""},
		{`{a:1}`, 0, false, ""},
		{`{"a":"1}`, 0, false, ""},
		{`{"a":[1}`, 0, false, ""},
		{`{"a":1}x`, 0, false, ""},
		{`{}x`, 0, false, ""},
		{`{"a":"\q"}`, 0, false, ""},
		{`{"\q":1}`, 0, false, ""},
	} {
		got, ok := scanObject(nil, []byte(tc.in), tc.limit)
		if ok != tc.ok {
			t.Errorf("scanObject(%q, %d): ok %v, want %v", tc.in, tc.limit, ok, tc.ok)
			continue
		}
		if !ok || tc.names == "" {
			continue
		}
		var names []string
		for _, m := range got {
			names = append(names, m.name)
		}
		if strings.Join(names, " ") != tc.names {
			t.Errorf("scanObject(%q): names %v, want %s", tc.in, names, tc.names)
		}
	}
}

// Names that case folding makes one, and names it does not.
func TestUniqueNames(t *testing.T) {
	for _, tc := range []struct {
		names  []string
		unique bool
	}{
		{[]string{"a", "b", "c"}, true},
		{[]string{"a", "A"}, false},
		{[]string{"z", "Z"}, false},
		{[]string{"sub", "SUB"}, false},
		{[]string{"kid", "\u212aid"}, false}, // the Kelvin sign folds to k
		{[]string{"s", "\u017f"}, false},     // the long s folds to s
		{[]string{"a", "a"}, false},
		{[]string{"@", "`"}, true}, // the bytes around A-Z and a-z do not fold
		{[]string{"[", "{"}, true},
		{[]string{"é", "É"}, false},
		{[]string{"ß", "ss"}, true}, // full folding would join them; simple folding does not
		{nil, true},
	} {
		var ms []member
		for _, n := range tc.names {
			ms = append(ms, member{name: n})
		}
		if got := uniqueNames(ms); got != tc.unique {
			t.Errorf("uniqueNames(%q) = %v, want %v", tc.names, got, tc.unique)
		}
	}
}
