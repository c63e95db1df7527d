package dpop

import (
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strconv"
	"strings"
	"testing"
)

func TestCharacterClasses(t *testing.T) {
	const unreservedSet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
	for i := range 256 {
		c := byte(i)
		_, err := strconv.ParseUint(string(c), 16, 8)
		if hex := err == nil; isHex(c) != hex {
			t.Errorf("isHex(%q) = %v", c, !hex)
		}
		if isHex(c) {
			want, _ := strconv.ParseUint(string(c), 16, 8)
			if got := unhex(c); uint64(got) != want {
				t.Errorf("unhex(%q) = %d, want %d", c, got, want)
			}
		}
		if want := strings.IndexByte(unreservedSet, c) >= 0; unreserved(c) != want {
			t.Errorf("unreserved(%q) = %v", c, !want)
		}
	}
}

func TestNormalizePath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/a/b", "/a/b"},
		{"/a/./b", "/a/b"},
		{"/a/b/.", "/a/b/"},
		{"/a/b/..", "/a/"},
		{"/a/../b", "/b"},
		{"/..", "/"},
		{"/../a", "/a"},
		{"/a/b/../../..", "/"},
		{"/a//b", "/a//b"},
		{"/%7e%41", "/~A"},                 // unreserved, decoded
		{"/%2f%3a%c3%a9", "/%2F%3A%C3%A9"}, // reserved and non-ASCII: upper-cased, kept
		{"/%2e%2E/a", "/a"},                // an encoded dot segment is a dot segment
		{"/a%20b", "/a%20b"},
	} {
		got, err := normalizePath(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("normalizePath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"/%", "/%4", "/%4g", "/%g4", "/a%"} {
		if got, err := normalizePath(bad); err == nil {
			t.Errorf("normalizePath(%q) = %q, want an error", bad, got)
		}
	}
}

func TestNormalizeURIPorts(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://a.example:443/x", "https://a.example/x"},
		{"http://a.example:80/x", "http://a.example/x"},
		{"https://a.example:80/x", "https://a.example:80/x"},
		{"http://a.example:443/x", "http://a.example:443/x"},
		{"https://[::1]:443/x", "https://[::1]/x"},
		{"https://[::1]:8443/x", "https://[::1]:8443/x"},
		{"https://A.Example:8443", "https://a.example:8443/"},
	} {
		got, err := normalizeURI(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("normalizeURI(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestPublicKeyRSAExponent(t *testing.T) {
	n := new(big.Int).Lsh(big.NewInt(1), 2047)
	n.Add(n, big.NewInt(1)) // 2048 bits; a key that only its parsing sees
	jwk := func(e []byte, n *big.Int) json.RawMessage {
		b, _ := json.Marshal(map[string]string{"kty": "RSA", "n": base64.RawURLEncoding.EncodeToString(n.Bytes()), "e": base64.RawURLEncoding.EncodeToString(e)})
		return b
	}
	for _, tc := range []struct {
		name string
		e    []byte
		ok   bool
	}{
		{"65537", []byte{1, 0, 1}, true},
		{"3", []byte{3}, true},
		{"a four-byte exponent", []byte{1, 0, 0, 1}, true},
		{"a five-byte exponent", []byte{1, 0, 0, 0, 1}, false},
		{"1", []byte{1}, false},
		{"an even exponent", []byte{4}, false},
		{"a leading zero", []byte{0, 1, 0, 1}, false},
	} {
		_, err := publicKey(jwk(tc.e, n), "RS256")
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	short := new(big.Int).Rsh(n, 1) // 2047 bits
	if _, err := publicKey(jwk([]byte{1, 0, 1}, short), "RS256"); err == nil {
		t.Error("a 2047-bit modulus accepted")
	}
}

// TestHeaderCacheBound: the cache keeps many headers, and never more than its bound.
func TestHeaderCacheBound(t *testing.T) {
	var c headerCache
	h := &proofHeader{alg: "ES256"}
	for i := range maxCachedHeaders {
		c.put(strconv.Itoa(i), h)
	}
	if c.get("0") != h || c.get(strconv.Itoa(maxCachedHeaders-1)) != h || len(c.m) != maxCachedHeaders {
		t.Fatalf("a cache of %d headers forgot some: %d held", maxCachedHeaders, len(c.m))
	}
	c.put("one more", h)
	if len(c.m) > maxCachedHeaders || c.get("one more") != h {
		t.Fatalf("past its bound: %d held", len(c.m))
	}
}
