package clip_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tokengate/tokengate/internal/clip"
)

func TestString(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 4, ""},
		{"abcd", 4, "abcd"},
		{"abcde", 4, "abcd…"},
		{"abcde", 0, "…"},
		{"abcde", -1, "…"},
		{"aé", 2, "a…"},                          // é is 2 bytes: not split
		{"aéb", 3, "aé…"},                        // exactly after é
		{"a€b", 2, "a…"},                         // € is 3 bytes
		{"a€b", 3, "a…"},                         // still inside €
		{"a€b", 4, "a€…"},                        // after €
		{"a😀b", 4, "a…"},                         // 4-byte sequence
		{"a😀b", 5, "a😀…"},                        // after it
		{"\x80\x80\x80\x80\x80", 2, "\x80\x80…"}, // invalid bytes are cut where they are
		{"éa", 1, "…"},                           // a first character split: nothing of it
		{"€a", 2, "…"},
		{"a\x80\x80\x80\x80b", 4, "a\x80\x80\x80…"}, // a start byte further back than a sequence reaches is not one
	} {
		if got := clip.String(c.in, c.n); got != c.want {
			t.Errorf("String(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestPrefix(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"abcd", 4, "abcd"}, // exactly n bytes: whole
		{"abcd", 5, "abcd"},
		{"abcd", 2, "ab"},
		{"abcd", -1, ""},
		{"aé", 2, "a"},
		{"é", 1, ""},
	} {
		if got := clip.Prefix(c.in, c.n); got != c.want {
			t.Errorf("Prefix(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func FuzzString(f *testing.F) {
	f.Add("héllo wörld €", 5)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n %= 64
		got := clip.String(s, n)
		if len(s) <= max(n, 0) {
			if got != s {
				t.Fatalf("%q shortened to %q", s, got)
			}
			return
		}
		body := strings.TrimSuffix(got, "…")
		if !strings.HasPrefix(s, body) || len(body) > max(n, 0) {
			t.Fatalf("String(%q, %d) = %q", s, n, got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("String(%q, %d) = %q splits a character", s, n, got)
		}
	})
}

func ExampleString() {
	fmt.Println(clip.String("/orders/ünïcode", 10))
	// Output: /orders/ü…
}
