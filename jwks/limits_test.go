package jwks

// Unit tests of the edges of the package's limits and small pieces (kid syntax, RSA
// sizes and exponents, key and document caps, the negative cache, the storage's write
// methods, validation edges). Each pins the value on both sides of a bound, so that an
// off-by-one in either direction fails: see docs/testing.md (mutation testing).

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
)

func TestValidKIDEdges(t *testing.T) {
	for kid, want := range map[string]bool{
		"a":                                   true,
		strings.Repeat("k", MaxKIDLength):     true,
		strings.Repeat("k", MaxKIDLength+1):   false,
		"":                                    false,
		"with space":                          true, // 0x20 is printable
		"tilde~":                              true, // 0x7e, the last printable ASCII byte
		"unit\x1fseparator":                   false,
		"del\x7f":                             false,
		"nul\x00":                             false,
		"ключ-ü":                              true, // bytes over 0x7f are not control characters
		"\x1f" + strings.Repeat("k", 10):      false,
		strings.Repeat("k", 10) + "\x1f":      false,
		strings.Repeat("é", MaxKIDLength/2):   true,
		strings.Repeat("é", MaxKIDLength/2+1): false, // 258 bytes: length counts bytes
	} {
		if got := validKID(kid); got != want {
			t.Errorf("validKID(%q) = %v, want %v", kid, got, want)
		}
	}
}

// rsaJWK is the JWK of an RSA public key with modulus n and exponent e (big-endian
// bytes), which need not be a real key: parseKey only looks at sizes and values.
func rsaJWK(n *big.Int, e []byte) json.RawMessage {
	raw, _ := json.Marshal(map[string]string{"kty": "RSA", "kid": "r", "n": b64(n.Bytes()), "e": b64(e)})
	return raw
}

func TestParseKeyRSAEdges(t *testing.T) {
	odd := func(bits int) *big.Int { // an odd number of exactly bits bits
		n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
		return n.Add(n, big.NewInt(1))
	}
	f4 := big.NewInt(65537).Bytes()
	for _, tc := range []struct {
		name   string
		raw    json.RawMessage
		reason string
	}{
		{"2047-bit modulus", rsaJWK(odd(MinRSABits-1), f4), skipWeakRSA},
		{"2048-bit modulus", rsaJWK(odd(MinRSABits), f4), ""},
		{"8192-bit modulus", rsaJWK(odd(MaxRSABits), f4), ""},
		{"8193-bit modulus", rsaJWK(odd(MaxRSABits+1), f4), skipWeakRSA},
		{"exponent 3", rsaJWK(odd(2048), []byte{3}), ""},
		{"exponent 2", rsaJWK(odd(2048), []byte{2}), skipInvalid},
		{"exponent 1", rsaJWK(odd(2048), []byte{1}), skipInvalid},
		// Four bytes of exponent are six base64url characters: the most allowed.
		{"exponent 2^31-1 (4 bytes)", rsaJWK(odd(2048), []byte{0x7f, 0xff, 0xff, 0xff}), ""},
		{"exponent of 5 bytes", rsaJWK(odd(2048), []byte{0x01, 0x00, 0x00, 0x00, 0x01}), skipInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, reason, detail := parseKey(tc.raw, rsaAlgs)
			if reason != tc.reason {
				t.Fatalf("reason = %q (%s), want %q", reason, detail, tc.reason)
			}
		})
	}
}

func TestParseKeyPrivateMembers(t *testing.T) {
	// Every private member on its own makes the key refused, whatever its type.
	for _, member := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
		raw := jwk(t, &rsa2048.PublicKey, map[string]any{member: "AQAB"})
		if _, _, reason, _ := parseKey(raw, rsaAlgs); reason != skipPrivate {
			t.Errorf("member %q: reason %q, want %q", member, reason, skipPrivate)
		}
	}
	raw := jwk(t, &rsa2048.PublicKey, map[string]any{"oth": []map[string]string{{"r": "AQ", "d": "AQ", "t": "AQ"}}})
	if _, _, reason, _ := parseKey(raw, rsaAlgs); reason != skipPrivate {
		t.Errorf("member oth: reason %q, want %q", reason, skipPrivate)
	}
	// An empty key_ops array says nothing either way: the key is kept.
	raw = jwk(t, &p256.PublicKey, map[string]any{"key_ops": []string{}})
	if _, _, reason, detail := parseKey(raw, algES256); reason != "" {
		t.Errorf("empty key_ops: reason %q (%s)", reason, detail)
	}
}

func TestParseJWKSKeyCapEdge(t *testing.T) {
	keys := []json.RawMessage{
		jwk(t, &p256.PublicKey, map[string]any{"kid": "a"}),
		jwk(t, &p384.PublicKey, map[string]any{"kid": "b"}),
		jwk(t, edPub, map[string]any{"kid": "c"}),
	}
	doc, _ := json.Marshal(map[string]any{"keys": keys})
	if p, err := parseJWKS(doc, 0xffff, len(keys)); err != nil || len(p.keys) != len(keys) {
		t.Fatalf("a document with exactly maxKeys keys: %d keys, %v", len(p.keys), err)
	}
	if _, err := parseJWKS(doc, 0xffff, len(keys)-1); !errors.Is(err, ErrFetch) {
		t.Fatalf("one key over maxKeys: %v", err)
	}
	// Keys without a kid are never duplicates of each other.
	noKID, _ := json.Marshal(map[string]any{"keys": []json.RawMessage{
		jwk(t, &p256.PublicKey, nil), jwk(t, &p384.PublicKey, nil),
	}})
	if p, err := parseJWKS(noKID, 0xffff, 10); err != nil || len(p.keys) != 2 || len(p.skipped) != 0 {
		t.Fatalf("two keys without kid: %d kept, %+v skipped, %v", len(p.keys), p.skipped, err)
	}
}

func TestNegCacheIsCapped(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := negCache{ttl: time.Minute, max: 3}
	for _, kid := range []string{"a", "b", "c"} {
		c.add(kid, now)
	}
	for _, kid := range []string{"a", "b", "c"} {
		if !c.contains(kid, now) {
			t.Fatalf("%s forgotten before the cache was full", kid)
		}
	}
	c.add("d", now) // the fourth kid: the cache is full, so it starts over
	if c.contains("a", now) || c.contains("c", now) {
		t.Fatal("a full cache kept its old kids: it is not bounded")
	}
	if !c.contains("d", now) {
		t.Fatal("the kid that overflowed the cache is not remembered")
	}
	if !c.contains("d", now.Add(time.Minute-time.Nanosecond)) || c.contains("d", now.Add(time.Minute)) {
		t.Fatal("an entry must live exactly ttl")
	}
	c.add("e", now)
	c.reset()
	if c.contains("e", now) {
		t.Fatal("reset kept a kid")
	}

	// An expired entry that is looked up goes: it does not count toward the cap.
	c = negCache{ttl: time.Minute, max: 2}
	c.add("old", now)
	later := now.Add(time.Minute)
	if c.contains("old", later) {
		t.Fatal("an expired kid is still remembered")
	}
	c.add("b", later)
	c.add("c", later) // two live kids: the cap is not reached
	if !c.contains("b", later) || !c.contains("c", later) {
		t.Fatal("an expired entry counted toward the cap")
	}
}

func TestStorageWrites(t *testing.T) {
	ctx := context.Background()
	mk := func(kid string) jwkset.JWK {
		t.Helper()
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		j, err := jwkset.NewJWKFromKey(&k.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	kids := func(st *storage) string {
		all, _ := st.KeyReadAll(ctx)
		var out []string
		for _, k := range all {
			out = append(out, k.Marshal().KID)
		}
		return strings.Join(out, ",")
	}
	st := newStorage()
	a, b := mk("a"), mk("b")
	if err := st.KeyReplaceAll(ctx, []jwkset.JWK{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := st.KeyWrite(ctx, mk("c")); err != nil {
		t.Fatal(err)
	}
	if got := kids(st); got != "a,b,c" || st.removals.Load() != 0 {
		t.Fatalf("after adding c: %s, %d removals", got, st.removals.Load())
	}
	a2 := mk("a")
	_ = st.KeyWrite(ctx, a2) // replaces a only
	if got := kids(st); got != "b,c,a" || st.removals.Load() != 1 {
		t.Fatalf("after replacing a: %s, %d removals", got, st.removals.Load())
	}
	if k, _ := st.KeyRead(ctx, "a"); !sameKey(k, a2) || sameKey(k, a) {
		t.Fatal("kid a does not name the new key")
	}
	_ = st.KeyWrite(ctx, mk("")) // a key without kid replaces nothing
	if got := kids(st); got != "b,c,a," {
		t.Fatalf("after adding a key without kid: %q", got)
	}
	if ok, _ := st.KeyDelete(ctx, "b"); !ok {
		t.Fatal("deleting b reported nothing deleted")
	}
	if ok, _ := st.KeyDelete(ctx, "b"); ok {
		t.Fatal("deleting b twice reported a deletion")
	}
	if got := kids(st); got != "c,a," || st.removals.Load() != 2 {
		t.Fatalf("after deleting b: %q, %d removals", got, st.removals.Load())
	}
	if _, err := st.KeyRead(ctx, "b"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("deleted kid read: %v", err)
	}
	// KeyReadAll hands out a copy: changing it changes nothing in the storage.
	all, _ := st.KeyReadAll(ctx)
	all[0] = b
	if got := kids(st); got != "c,a," {
		t.Fatalf("KeyReadAll's slice aliases the storage: %q", got)
	}
	// The same public key under another kid is another key.
	renamed, err := jwkset.NewJWKFromKey(a2.Key(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "renamed"}})
	if err != nil {
		t.Fatal(err)
	}
	if !sameKey(a2, a2) || sameKey(a, b) || sameKey(a2, renamed) {
		t.Fatal("sameKey")
	}
	// The JSON and Marshal views hold the keys (public only: there is nothing else).
	for name, view := range map[string]func(context.Context) (json.RawMessage, error){
		"JSON": st.JSON, "JSONPublic": st.JSONPublic, "JSONPrivate": st.JSONPrivate,
		"JSONWithOptions": func(ctx context.Context) (json.RawMessage, error) {
			return st.JSONWithOptions(ctx, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		},
	} {
		raw, err := view(ctx)
		if err != nil || !strings.Contains(string(raw), `"kid":"c"`) || strings.Contains(string(raw), `"d":`) {
			t.Errorf("%s: %s %v", name, raw, err)
		}
	}
	if m, err := st.Marshal(ctx); err != nil || len(m.Keys) != 3 {
		t.Errorf("Marshal: %d keys, %v", len(m.Keys), err)
	}
	if m, err := st.MarshalWithOptions(ctx, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{}); err != nil || len(m.Keys) != 3 {
		t.Errorf("MarshalWithOptions: %d keys, %v", len(m.Keys), err)
	}

	// A write that takes several keys away counts once.
	before := st.removals.Load()
	_ = st.KeyReplaceAll(ctx, []jwkset.JWK{renamed})
	if n := st.removals.Load() - before; n != 1 {
		t.Fatalf("a write that took every key away counted %d removals, want 1", n)
	}
}

func TestAlgSetString(t *testing.T) {
	// The names, in DefaultAlgorithms order, that log lines and errors show.
	if got := (algEdDSA | algRS256 | algES512).String(); got != "RS256 ES512 EdDSA" {
		t.Fatalf("String() = %q", got)
	}
	if got := algSet(0).String(); got != "" {
		t.Fatalf("empty set: %q", got)
	}
	_, _, reason, detail := parseKey(jwk(t, &p256.PublicKey, nil), algRS256|algPS256)
	if reason != skipNotAllowed || !strings.Contains(detail, "verifies only ES256") {
		t.Fatalf("not allowed: %q %q", reason, detail)
	}
}

func TestThumbprintOfAnUnusableECKey(t *testing.T) {
	if tp, err := Thumbprint(&ecdsa.PublicKey{}); err == nil || tp != "" {
		t.Fatalf("thumbprint of an EC key without a curve: %q %v", tp, err)
	}
}

func TestValidateEdges(t *testing.T) {
	// Min equal to Max is a fixed interval, not a mistake.
	c := Config{Issuer: "https://a.example.com", Refresh: Refresh{Min: time.Hour, Max: time.Hour}}
	if _, _, err := c.withDefaults().validate(); err != nil {
		t.Fatalf("refresh.min == refresh.max: %v", err)
	}
	// A zero is a default, never a problem; a negative value is one.
	if _, _, err := (Config{Issuer: "https://a.example.com"}).withDefaults().validate(); err != nil {
		t.Fatal(err)
	}
	notPEM := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for field, cfg := range map[string]Config{
		"Issuer":           {Issuer: "https://a b.example.com"}, // not a URL at all
		"JWKSURI":          {Issuer: "https://a.example.com", JWKSURI: "https://a.example.com:port/"},
		"CAFile":           {Issuer: "https://a.example.com", CAFile: notPEM},
		"MaxResponseBytes": {Issuer: "https://a.example.com", MaxResponseBytes: -1},
		"MaxKeys":          {Issuer: "https://a.example.com", MaxKeys: -1},
		"HTTPTimeout":      {Issuer: "https://a.example.com", HTTPTimeout: -1},
		"Refresh.Min":      {Issuer: "https://a.example.com", Refresh: Refresh{Min: -1}},
	} {
		_, _, err := cfg.withDefaults().validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != field {
			t.Errorf("%s negative: %v", field, err)
		}
	}
}
