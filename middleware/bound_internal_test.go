package middleware

import (
	"slices"
	"testing"
)

func TestSplitQuoted(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`a;b`, []string{"a", "b"}},
		{`a;"b;c";d`, []string{"a", `"b;c"`, "d"}},
		{`x="a\";b";y`, []string{`x="a\";b"`, "y"}},
		{`;`, []string{"", ""}},
		{``, []string{""}},
	} {
		if got := splitQuoted(tc.in, ';'); !slices.Equal(got, tc.want) {
			t.Errorf("splitQuoted(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSingleUseKey: keys are of one size, and an issuer and jti never run into another
// pair's (the issuer's length is part of the key).
func TestSingleUseKey(t *testing.T) {
	a, b := singleUseKey("https://as", "x1"), singleUseKey("https://as/x", "1")
	if a == b {
		t.Error("two issuer and jti pairs with the same concatenation share a key")
	}
	if a != singleUseKey("https://as", "x1") {
		t.Error("the key is not deterministic")
	}
	if len(a) != len(singleUseKey("i", string(make([]byte, 4096)))) {
		t.Error("keys differ in size")
	}
}

func TestIsThumbprint(t *testing.T) {
	good := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" // RFC 7638 §3.1's example
	for s, want := range map[string]bool{
		good:             true,
		good[:42]:        false,
		good + "A":       false,
		good[:42] + "t":  false, // stray bits in the last character
		good[:42] + "=":  false,
		"+" + good[1:]:   false,
		good[:41] + "/s": false,
	} {
		if isThumbprint(s) != want {
			t.Errorf("isThumbprint(%q) = %v, want %v", s, !want, want)
		}
	}
}
