package serviceaccount_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/serviceaccount"
)

func TestParseValid(t *testing.T) {
	ns63 := strings.Repeat("n", 63)
	name253 := strings.Repeat("a", 126) + "." + strings.Repeat("b", 126)
	longLabel := strings.Repeat("x", 200) // Kubernetes bounds the name, not its labels
	for _, tc := range []struct {
		name, sub string
		want      serviceaccount.Identity
	}{
		{"plain", "system:serviceaccount:payments:billing", serviceaccount.Identity{Namespace: "payments", Name: "billing"}},
		{"default", "system:serviceaccount:default:default", serviceaccount.Identity{Namespace: "default", Name: "default"}},
		{"one byte each", "system:serviceaccount:a:b", serviceaccount.Identity{Namespace: "a", Name: "b"}},
		{"digits", "system:serviceaccount:0:9", serviceaccount.Identity{Namespace: "0", Name: "9"}},
		{"dashes inside", "system:serviceaccount:kube-system:replica-set-controller", serviceaccount.Identity{Namespace: "kube-system", Name: "replica-set-controller"}},
		{"dots in the name", "system:serviceaccount:payments:billing.v2.eu", serviceaccount.Identity{Namespace: "payments", Name: "billing.v2.eu"}},
		{"dash next to a label's end", "system:serviceaccount:a--b:x--y.z-1", serviceaccount.Identity{Namespace: "a--b", Name: "x--y.z-1"}},
		{"namespace of 63", "system:serviceaccount:" + ns63 + ":x", serviceaccount.Identity{Namespace: ns63, Name: "x"}},
		{"name of 253", "system:serviceaccount:x:" + name253, serviceaccount.Identity{Namespace: "x", Name: name253}},
		{"a label of 200 in the name", "system:serviceaccount:x:" + longLabel, serviceaccount.Identity{Namespace: "x", Name: longLabel}},
		{"longest sub", "system:serviceaccount:" + ns63 + ":" + name253, serviceaccount.Identity{Namespace: ns63, Name: name253}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := serviceaccount.Parse(tc.sub)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if got.Subject() != tc.sub {
				t.Errorf("Subject() = %q", got.Subject())
			}
			if s := got.String(); s != tc.want.Namespace+"/"+tc.want.Name {
				t.Errorf("String() = %q", s)
			}
		})
	}
	if n := len("system:serviceaccount:" + ns63 + ":" + name253); n != serviceaccount.MaxSubjectLength {
		t.Errorf("MaxSubjectLength is %d, the longest valid sub %d", serviceaccount.MaxSubjectLength, n)
	}
}

func TestParseInvalid(t *testing.T) {
	ns64 := strings.Repeat("n", 64)
	name254 := strings.Repeat("a", 127) + "." + strings.Repeat("b", 126)
	for _, tc := range []struct {
		name, sub, want string // want: part of the error's message, naming the check
	}{
		// The prefix.
		{"empty", "", "does not begin with"},
		{"a user", "alice@example.com", "does not begin with"},
		{"the group form", "system:serviceaccounts:payments", "does not begin with"},
		{"the group form with a name", "system:serviceaccounts:payments:billing", "does not begin with"},
		{"the group of all", "system:serviceaccounts", "does not begin with"},
		{"a node", "system:node:node-1", "does not begin with"},
		{"upper-case prefix", "System:ServiceAccount:payments:billing", "does not begin with"},
		{"leading space", " system:serviceaccount:payments:billing", "does not begin with"},
		{"prefix alone", "system:serviceaccount:", "no ':' between"},
		{"prefix cut short", "system:serviceaccount", "does not begin with"},
		{"a look-alike in the prefix", "system:serviceаccount:payments:billing", "does not begin with"}, // Cyrillic а
		// The colons.
		{"no name", "system:serviceaccount:payments", "no ':' between"},
		{"three parts", "system:serviceaccount:payments:billing:extra", "more than one ':'"},
		{"a trailing colon", "system:serviceaccount:payments:billing:", "more than one ':'"},
		{"a double colon", "system:serviceaccount:payments::billing", "more than one ':'"},
		// Empty parts.
		{"empty namespace", "system:serviceaccount::billing", "namespace: is empty"},
		{"empty name", "system:serviceaccount:payments:", "name: is empty"},
		{"both empty", "system:serviceaccount::", "namespace: is empty"},
		// The namespace.
		{"upper-case namespace", "system:serviceaccount:Payments:billing", "namespace: byte 0 is not"},
		{"a dot in the namespace", "system:serviceaccount:pay.ments:billing", "namespace: byte 3 is not"},
		{"namespace begins with '-'", "system:serviceaccount:-payments:billing", "namespace: does not begin and end"},
		{"namespace ends with '-'", "system:serviceaccount:payments-:billing", "namespace: does not begin and end"},
		{"namespace is '-'", "system:serviceaccount:-:billing", "namespace: does not begin and end"},
		{"a slash in the namespace", "system:serviceaccount:pay/ments:billing", "namespace: byte 3 is not"},
		{"an underscore in the namespace", "system:serviceaccount:pay_ments:billing", "namespace: byte 3 is not"},
		{"namespace of 64", "system:serviceaccount:" + ns64 + ":x", "namespace: is longer than 63"},
		{"a wildcard namespace", "system:serviceaccount:*:billing", "namespace: byte 0 is not"},
		// The name.
		{"upper-case name", "system:serviceaccount:payments:Billing", "name: byte 0 is not"},
		{"name begins with '.'", "system:serviceaccount:payments:.billing", "name: does not begin and end"},
		{"name ends with '.'", "system:serviceaccount:payments:billing.", "name: does not begin and end"},
		{"name begins with '-'", "system:serviceaccount:payments:-billing", "name: does not begin and end"},
		{"name is '.'", "system:serviceaccount:payments:.", "name: does not begin and end"},
		{"name is '..'", "system:serviceaccount:payments:..", "name: does not begin and end"},
		{"two dots", "system:serviceaccount:payments:bill..ing", "name: the '.' at byte 4"},
		{"a label ends with '-'", "system:serviceaccount:payments:bill-.ing", "name: the '.' at byte 5"},
		{"a label begins with '-'", "system:serviceaccount:payments:bill.-ing", "name: the '.' at byte 4"},
		{"a slash in the name", "system:serviceaccount:payments:bill/ing", "name: byte 4 is not"},
		{"a percent in the name", "system:serviceaccount:payments:bill%2fing", "name: byte 4 is not"},
		{"a wildcard name", "system:serviceaccount:payments:*", "name: byte 0 is not"},
		{"name of 254", "system:serviceaccount:x:" + name254, "name: is longer than 253"},
		// White space, control characters, Unicode.
		{"trailing space", "system:serviceaccount:payments:billing ", "name: byte 7 is not"},
		{"a space inside", "system:serviceaccount:pay ments:billing", "namespace: byte 3 is not"},
		{"a tab", "system:serviceaccount:payments:bill\ting", "name: byte 4 is not"},
		{"a newline", "system:serviceaccount:payments:billing\n", "name: byte 7 is not"},
		{"CR LF", "system:serviceaccount:payments:billing\r\nx-admin", "name: byte 7 is not"},
		{"NUL", "system:serviceaccount:payments:bill\x00ing", "name: byte 4 is not"},
		{"DEL", "system:serviceaccount:payments:bill\x7fing", "name: byte 4 is not"},
		{"a Cyrillic look-alike", "system:serviceaccount:payments:bіlling", "name: byte 1 is not"}, // і U+0456
		{"a fullwidth letter", "system:serviceaccount:ｐayments:billing", "namespace: byte 0 is not"},
		{"a Kelvin sign", "system:serviceaccount:payments:\u212aube", "name: byte 0 is not"},
		{"a zero-width space", "system:serviceaccount:payments:bill\u200bing", "name: byte 4 is not"},
		{"invalid UTF-8", "system:serviceaccount:payments:bill\xffing", "name: byte 4 is not"},
		// Length, before anything else.
		{"one byte too long", "system:serviceaccount:" + strings.Repeat("n", 63) + ":" + strings.Repeat("a", 254), "longer than 339 bytes"},
		{"huge", strings.Repeat("system:serviceaccount:a:b", 1<<16), "longer than 339 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := serviceaccount.Parse(tc.sub)
			if err == nil {
				t.Fatalf("Parse accepted %+v", id)
			}
			if !errors.Is(err, serviceaccount.ErrInvalidSubject) {
				t.Errorf("%v does not match ErrInvalidSubject", err)
			}
			if id != (serviceaccount.Identity{}) {
				t.Errorf("an error with %+v", id)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

// The errors never quote the token's sub: the Gate logs a subject only as a hash.
func TestParseErrorsQuoteNothing(t *testing.T) {
	for _, sub := range []string{
		"system:serviceaccount:secret-ns:Secret-Name",
		"system:serviceaccount:Secret-ns:secret-name",
		"user-secret-name",
	} {
		_, err := serviceaccount.Parse(sub)
		if err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "Secret") {
			t.Errorf("%q: %v", sub, err)
		}
	}
}
