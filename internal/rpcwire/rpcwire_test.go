package rpcwire

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestEncodeMessage(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		"the access token expired":        "the access token expired",
		"100% sure":                       "100%25 sure",
		"line\nbreak":                     "line%0Abreak",
		"caf\u00e9":                       "caf%C3%A9",
		"tab\tand ~ tilde":                "tab%09and ~ tilde",
		"\x7f\x00":                        "%7F%00",
		`quotes " and \ stay as they are`: `quotes " and \ stay as they are`,
	} {
		if got := EncodeMessage(in); got != want {
			t.Errorf("EncodeMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

// Whatever the message, the value is printable ASCII that decodes back to it.
func FuzzEncodeMessage(f *testing.F) {
	for _, s := range []string{"", "plain", "100%", "caf\u00e9", "\xff\xfe", "a\r\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := EncodeMessage(s)
		for i := 0; i < len(got); i++ {
			if got[i] < ' ' || got[i] > '~' {
				t.Fatalf("EncodeMessage(%q) = %q: byte %#x", s, got, got[i])
			}
		}
		back, err := url.PathUnescape(got)
		if err != nil || back != s {
			t.Fatalf("EncodeMessage(%q) = %q, decodes to %q, %v", s, got, back, err)
		}
	})
}

func TestIsRequest(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc":        true,
		"application/grpc+proto":  true,
		"application/grpc;x=y":    true,
		"Application/Grpc":        true,
		"application/grpc-web":    false,
		"application/grpcweb":     false,
		"application/grp":         false,
		" application/grpc":       false,
		"application/json":        false,
		"multipart/grpc":          false,
		"application/grpc\x00abc": false,
	} {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("Content-Type", ct)
		if got := IsRequest(r); got != want {
			t.Errorf("IsRequest(%q) = %v, want %v", ct, got, want)
		}
	}
	r := httptest.NewRequest("POST", "/", nil)
	if IsRequest(r) {
		t.Error("a request without Content-Type is a gRPC call")
	}
	r.Header["Content-Type"] = []string{"application/grpc", "application/grpc"}
	if IsRequest(r) {
		t.Error("two Content-Types make a gRPC call")
	}
}

func TestWriteStatus(t *testing.T) {
	r := httptest.NewRequest("POST", "/p.S/M", nil)
	r.ProtoMajor = 2
	w := httptest.NewRecorder()
	w.Header().Set("Content-Length", "12")
	WriteStatus(w, r, Unavailable, "upstream 100% down")
	res := w.Result()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != ContentType || res.Header.Get("Content-Length") != "" {
		t.Fatalf("%d %v", res.StatusCode, res.Header)
	}
	if res.Trailer.Get("Grpc-Status") != "14" || res.Trailer.Get("Grpc-Message") != "upstream 100%25 down" {
		t.Fatalf("trailers %v", res.Trailer)
	}
	if strings.Contains(w.Body.String(), "down") {
		t.Fatal("a body")
	}
}

func TestTimeout(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   time.Duration
		ok     bool
	}{
		{[]string{"1H"}, time.Hour, true},
		{[]string{"2M"}, 2 * time.Minute, true},
		{[]string{"3S"}, 3 * time.Second, true},
		{[]string{"250m"}, 250 * time.Millisecond, true},
		{[]string{"7u"}, 7 * time.Microsecond, true},
		{[]string{"99999999n"}, 99999999 * time.Nanosecond, true},
		{[]string{"0m"}, 0, true},
		{[]string{"2562047H"}, 2562047 * time.Hour, true}, // the longest that fits
		{nil, 0, false},
		{[]string{"2562048H"}, 0, false}, // longer than a time.Duration
		{[]string{"123456789m"}, 0, false},
		{[]string{"m"}, 0, false},
		{[]string{"10"}, 0, false},
		{[]string{"10s"}, 0, false},
		{[]string{"+10S"}, 0, false},
		{[]string{"-10S"}, 0, false},
		{[]string{" 10S"}, 0, false},
		{[]string{"1_0S"}, 0, false},
		{[]string{"10S", "10S"}, 0, false},
	} {
		r := httptest.NewRequest("POST", "/x", nil)
		if tc.values != nil {
			r.Header["Grpc-Timeout"] = tc.values
		}
		if got, ok := Timeout(r); got != tc.want || ok != tc.ok {
			t.Errorf("Timeout(%q) = %v, %v; want %v, %v", tc.values, got, ok, tc.want, tc.ok)
		}
	}
}
