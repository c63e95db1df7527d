package middleware

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// A client's X-Request-Id reaches the API and the logs as sent only when it is one
// value of 1 to 128 characters from the sets UUIDs, hex, base64 and W3C trace ids are
// written in; anything else is replaced by an id of tokengate's, never logged.
func TestRequestIDs(t *testing.T) {
	long := strings.Repeat("a", maxRequestID)
	for _, tc := range []struct {
		name string
		ids  []string
		kept bool
	}{
		{"UUID", []string{"0b8f6c1e-3a1d-4c8e-9f2a-6b7c8d9e0f1a"}, true},
		{"W3C traceparent", []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, true},
		{"base64", []string{"q83vEjRWeJA+/w=="}, true},
		{"every character allowed", []string{"azAZ09-_.:+/="}, true},
		// The ends of each range, alone.
		{"a", []string{"a"}, true},
		{"z", []string{"z"}, true},
		{"A", []string{"A"}, true},
		{"Z", []string{"Z"}, true},
		{"0", []string{"0"}, true},
		{"9", []string{"9"}, true},
		{"128 characters", []string{long}, true},

		{"empty", []string{""}, false},
		{"129 characters", []string{long + "a"}, false},
		{"two values", []string{"a", "b"}, false},
		{"a space", []string{"bad id"}, false},
		{"a quote", []string{`a"b`}, false},
		// The characters next to the ranges.
		{"@ (before A)", []string{"a@b"}, false},
		{"[ (after Z)", []string{"a[b"}, false},
		{"` (before a)", []string{"a`b"}, false},
		{"{ (after z)", []string{"a{b"}, false},
		{"; (after 9 and :)", []string{"a;b"}, false},
		{"~", []string{"a~b"}, false},
		{"a control character", []string{"a\x00b"}, false},
		{"not ASCII", []string{"caf\xc3\xa9"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header[RequestIDHeader] = tc.ids
			ensureRequestID(httptest.NewRecorder(), r)
			got := r.Header[RequestIDHeader]
			if tc.kept {
				if len(got) != 1 || got[0] != tc.ids[0] {
					t.Fatalf("%q became %q, want it kept", tc.ids, got)
				}
				return
			}
			if len(got) != 1 || len(got[0]) != 32 || strings.Trim(got[0], "0123456789abcdef") != "" {
				t.Fatalf("%q became %q, want a new id of 32 hex digits", tc.ids, got)
			}
		})
	}
	// A request without an id gets one, and each its own.
	r1, r2 := httptest.NewRequest("GET", "/", nil), httptest.NewRequest("GET", "/", nil)
	ensureRequestID(httptest.NewRecorder(), r1)
	ensureRequestID(httptest.NewRecorder(), r2)
	if a, b := r1.Header.Get(RequestIDHeader), r2.Header.Get(RequestIDHeader); len(a) != 32 || a == b {
		t.Fatalf("new ids %q and %q", a, b)
	}
}
