package middleware

import (
	"strings"
	"testing"
	"time"
)

// NumericDates: JSON numbers within range, fractions kept; anything else named.
func TestNumericDate(t *testing.T) {
	for _, tc := range []struct {
		json string
		want time.Time
		err  string
	}{
		{`1700000000`, time.Unix(1700000000, 0), ""},
		{`9000000000`, time.Unix(9000000000, 0), ""},    // a leading 9 is a digit too
		{`2000000000.75`, time.Unix(2000000000, 0), ""}, // whole seconds, as golang-jwt keeps them
		{`0`, time.Unix(0, 0), ""},
		{`99999999999`, time.Unix(99999999999, 0), ""},
		{`100000000000`, time.Time{}, "exp is out of range"}, // 1e11: year 5138
		{`-1`, time.Time{}, "exp is out of range"},
		{`"1700000000"`, time.Time{}, "exp is not a JSON number"},
		{`true`, time.Time{}, "exp is not a JSON number"},
		{`null`, time.Time{}, "exp is not a JSON number"},
		{`[1]`, time.Time{}, "exp is not a JSON number"},
	} {
		var c Claims
		err := c.UnmarshalJSON([]byte(`{"exp":` + tc.json + `}`))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("exp %s: %v", tc.json, err)
		case tc.err == "" && !c.ExpiresAt.Equal(tc.want):
			t.Errorf("exp %s: %v, want %v", tc.json, c.ExpiresAt, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("exp %s: error %v, want %q", tc.json, err, tc.err)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{DecisionDenied: "denied", DecisionAllowed: "allowed", DecisionShadowDenied: "shadow_denied", numOutcomes: "Outcome(3)", 200: "Outcome(200)"} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d) = %q, want %q", uint8(o), got, want)
		}
		if b, _ := o.MarshalText(); string(b) != want {
			t.Errorf("Outcome(%d) marshals as %q", uint8(o), b)
		}
	}
	if (Decision{}).Forward() || (Decision{}).Allowed() {
		t.Error("the zero Decision lets a request through")
	}
}

// The character classes of the values a configuration puts into headers, at their
// edges.
func TestCharacterClasses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check func(string) bool
		ok    []string
		bad   []string
	}{
		{"quotable (realm)", quotable, []string{"", " ", "~", "a b", "!"}, []string{"\x1f", "\x7f", `"`, `\`, "é"}},
		{"validScope", validScope, []string{"!", "~", "orders:read", "#", "["}, []string{"", " ", "\x7f", `"`, `\`, "a b", "é"}},
		{"isToken", isToken, []string{"!", "~", "access_token", "a-b.c"}, []string{"", " ", "\x7f", "a;b", "a=b", "a b", "(", "é"}},
	} {
		for _, s := range tc.ok {
			if !tc.check(s) {
				t.Errorf("%s refuses %q", tc.name, s)
			}
		}
		for _, s := range tc.bad {
			if tc.check(s) {
				t.Errorf("%s accepts %q", tc.name, s)
			}
		}
	}
}
