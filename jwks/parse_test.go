package jwks

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"

	"github.com/tokengate/tokengate/internal/joined"
)

var (
	rsa2048, _  = rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _  = rsa.GenerateKey(rand.Reader, 1024)
	p256, _     = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _     = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ = ed25519.GenerateKey(rand.Reader)
	x25519, _   = ecdh.X25519().GenerateKey(rand.Reader)
)

// jwk marshals pub as a public JWK with members laid over it (nil removes one).
func jwk(t testing.TB, pub any, members map[string]any) json.RawMessage {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(j.Marshal())
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	for k, v := range members {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	raw, _ = json.Marshal(m)
	return raw
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestParseKey(t *testing.T) {
	all := algBit("RS256") | algBit("PS256") | algBit("ES256") | algBit("ES384") | algBit("EdDSA")
	cases := []struct {
		name    string
		raw     json.RawMessage
		allowed algSet
		reason  string
	}{
		{"RSA 2048", jwk(t, &rsa2048.PublicKey, map[string]any{"kid": "a", "use": "sig", "alg": "RS256"}), all, ""},
		{"RSA without alg or use", jwk(t, &rsa2048.PublicKey, map[string]any{"kid": "a"}), all, ""},
		{"EC P-256", jwk(t, &p256.PublicKey, map[string]any{"kid": "a"}), all, ""},
		{"Ed25519", jwk(t, edPub, map[string]any{"kid": "a"}), all, ""},
		{"key_ops verify", jwk(t, &p256.PublicKey, map[string]any{"key_ops": []string{"verify"}}), all, ""},

		{"oct", json.RawMessage(`{"kty":"oct","kid":"h","k":"c2VjcmV0"}`), all, skipSymmetric},
		{"use enc", jwk(t, &rsa2048.PublicKey, map[string]any{"use": "enc"}), all, skipEncryption},
		{"use misspelled", jwk(t, &rsa2048.PublicKey, map[string]any{"use": "signature"}), all, skipInvalid},
		{"key_ops without verify", jwk(t, &rsa2048.PublicKey, map[string]any{"key_ops": []string{"encrypt"}}), all, skipKeyOps},
		{"RSA 1024", jwk(t, &rsa1024.PublicKey, nil), all, skipWeakRSA},
		{"RSA exponent 1", jwk(t, &rsa2048.PublicKey, map[string]any{"e": "AQ"}), all, skipInvalid},
		{"RSA even exponent", jwk(t, &rsa2048.PublicKey, map[string]any{"e": b64(big.NewInt(65536).Bytes())}), all, skipInvalid},
		{"RSA huge exponent", jwk(t, &rsa2048.PublicKey, map[string]any{"e": b64(make([]byte, 9))}), all, skipInvalid},
		{"private RSA members", jwk(t, &rsa2048.PublicKey, map[string]any{"d": b64(rsa2048.D.Bytes())}), all, skipPrivate},
		{"private EC member", jwk(t, &p256.PublicKey, map[string]any{"d": b64(mustBytes(p256.Bytes()))}), all, skipPrivate},
		{"EC off the curve (X7)", json.RawMessage(`{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ"}`), all, skipInvalid},
		{"EC bad base64", json.RawMessage(`{"kty":"EC","crv":"P-256","x":"!!","y":"AQ"}`), all, skipInvalid},
		{"secp256k1", json.RawMessage(`{"kty":"EC","crv":"secp256k1","x":"AQ","y":"AQ"}`), all, skipUnsupported},
		{"X25519 is not a signing key", jwk(t, x25519.PublicKey(), nil), all, skipUnsupported},
		{"Ed448", json.RawMessage(`{"kty":"OKP","crv":"Ed448","x":"AQ"}`), all, skipUnsupported},
		{"Ed25519 neutral point (small order)", json.RawMessage(`{"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`), all, skipInvalid},
		{"Ed25519 p-1 (small order)", json.RawMessage(`{"kty":"OKP","crv":"Ed25519","x":"7P___________________________________________38"}`), all, skipInvalid},
		{"unknown kty", json.RawMessage(`{"kty":"PQC","x":"AQ"}`), all, skipUnsupported},
		{"not an object", json.RawMessage(`[1,2]`), all, skipInvalid},
		{"kid of the wrong type", json.RawMessage(`{"kty":"RSA","kid":7}`), all, skipInvalid},
		{"RSA key with alg ES256", jwk(t, &rsa2048.PublicKey, map[string]any{"alg": "ES256"}), all, skipAlgMismatch},
		{"P-384 key with alg ES256", jwk(t, &p384.PublicKey, map[string]any{"alg": "ES256"}), all, skipAlgMismatch},
		{"RSA key with an encryption alg", jwk(t, &rsa2048.PublicKey, map[string]any{"alg": "RSA-OAEP"}), all, skipAlgMismatch},
		{"RSA key with alg HS256", jwk(t, &rsa2048.PublicKey, map[string]any{"alg": "HS256"}), all, skipAlgMismatch},
		{"EC key when only RSA is allowed", jwk(t, &p256.PublicKey, nil), algBit("RS256"), skipNotAllowed},
		{"RSA key with alg PS512, issuer allows RS256 only", jwk(t, &rsa2048.PublicKey, map[string]any{"alg": "PS512"}), algBit("RS256"), skipNotAllowed},
		{"kid with a newline", jwk(t, &p256.PublicKey, map[string]any{"kid": "a\nb"}), all, skipKIDInvalid},
		{"kid of 300 bytes", jwk(t, &p256.PublicKey, map[string]any{"kid": strings.Repeat("k", 300)}), all, skipKIDInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, reason, detail := parseKey(tc.raw, tc.allowed)
			if reason != tc.reason {
				t.Fatalf("reason = %q (%s), want %q", reason, detail, tc.reason)
			}
		})
	}
}

func TestParseJWKS(t *testing.T) {
	good := jwk(t, &p256.PublicKey, map[string]any{"kid": "a"})
	other := jwk(t, &rsa2048.PublicKey, map[string]any{"kid": "a"})
	doc := func(keys ...json.RawMessage) []byte {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		return b
	}
	t.Run("bad keys are skipped, good ones kept", func(t *testing.T) {
		p, err := parseJWKS(doc(good, json.RawMessage(`{"kty":"oct","k":"AA"}`), json.RawMessage(`null`)), 0xffff, 100)
		if err != nil || len(p.keys) != 1 || len(p.skipped) != 2 {
			t.Fatalf("keys %d skipped %d err %v", len(p.keys), len(p.skipped), err)
		}
	})
	t.Run("duplicate kid: the first stays (K4)", func(t *testing.T) {
		for _, order := range [][]json.RawMessage{{good, other}, {other, good}} {
			p, err := parseJWKS(doc(order...), 0xffff, 100)
			if err != nil || len(p.keys) != 1 || p.skipped[0].reason != skipDuplicateKID {
				t.Fatalf("keys %d skipped %+v err %v", len(p.keys), p.skipped, err)
			}
			if string(jwk(t, p.keys[0].Key(), map[string]any{"kid": "a"})) != string(order[0]) {
				t.Fatal("the second key won")
			}
		}
	})
	t.Run("a skipped key does not take its kid", func(t *testing.T) {
		enc := jwk(t, &rsa2048.PublicKey, map[string]any{"kid": "a", "use": "enc"})
		p, err := parseJWKS(doc(enc, good), 0xffff, 100)
		if err != nil || len(p.keys) != 1 {
			t.Fatalf("keys %d err %v", len(p.keys), err)
		}
	})
	for name, tc := range map[string]struct {
		doc  []byte
		want string
	}{
		"not JSON":       {[]byte("<html>"), "not a JWKS"},
		"no keys":        {[]byte(`{"kys":[]}`), `no "keys"`},
		"keys not array": {[]byte(`{"keys":{}}`), "not a JWKS"},
		"empty":          {[]byte(`{"keys":[]}`), "no usable"},
		"over the cap":   {doc(good, good, good), "more than the cap"},
		"null document":  {[]byte(`null`), `no "keys"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseJWKS(tc.doc, 0xffff, 2)
			if !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrFetch with %q", err, tc.want)
			}
		})
	}
}

func TestSnapshotKIDLess(t *testing.T) {
	keys := func(pubs ...any) []jwkset.JWK {
		var out []jwkset.JWK
		for i, p := range pubs {
			j, err := jwkset.NewJWKFromKey(p, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: fmt.Sprint(i)}})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, j)
		}
		return out
	}
	s := newSnapshot(keys(&rsa2048.PublicKey, &p256.PublicKey, &p384.PublicKey, edPub))
	for _, alg := range []string{"RS256", "PS512", "ES256", "ES384", "EdDSA"} {
		if s.onlyKeyFor(algBit(alg)) == nil {
			t.Errorf("%s: no single key", alg)
		}
	}
	if s.onlyKeyFor(algBit("ES512")) != nil {
		t.Error("ES512 found a key of another curve")
	}
	s = newSnapshot(keys(&rsa2048.PublicKey, &rsa2048.PublicKey, &p256.PublicKey))
	if s.onlyKeyFor(algBit("RS256")) != nil {
		t.Error("two RSA keys but a kid-less RS256 token gets one")
	}
	if s.onlyKeyFor(algBit("ES256")) == nil {
		t.Error("the single P-256 key is not found")
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	empty, token := filepath.Join(dir, "empty"), filepath.Join(dir, "token")
	if os.WriteFile(empty, nil, 0o600) != nil || os.WriteFile(token, []byte("t0ken\n"), 0o600) != nil {
		t.Fatal("writing the token files")
	}
	cases := []struct {
		name  string
		cfg   Config
		field string
		want  string
	}{
		{"no issuer", Config{}, "Issuer", "required"},
		{"http issuer", Config{Issuer: "http://auth.example.com"}, "Issuer", "plain http"},
		{"ftp issuer", Config{Issuer: "ftp://auth.example.com"}, "Issuer", "https"},
		{"relative issuer", Config{Issuer: "auth.example.com"}, "Issuer", "absolute"},
		{"issuer with query", Config{Issuer: "https://a.example.com/?x=1"}, "Issuer", "query"},
		{"issuer with credentials", Config{Issuer: "https://u:p@a.example.com"}, "Issuer", "credentials"},
		{"http jwksURI", Config{Issuer: "https://a.example.com", JWKSURI: "http://a.example.com/jwks"}, "JWKSURI", "plain http"},
		{"both sources", Config{Issuer: "https://a.example.com", JWKSURI: "https://a.example.com/j", JWKSFile: "/x"}, "JWKSFile", "not both"},
		{"empty algorithms (X34)", Config{Issuer: "https://a.example.com", Algorithms: []string{}}, "Algorithms", "empty"},
		{"HS256", Config{Issuer: "https://a.example.com", Algorithms: []string{"RS256", "HS256"}}, "Algorithms", "HMAC"},
		{"none", Config{Issuer: "https://a.example.com", Algorithms: []string{"none"}}, "Algorithms", "never"},
		{"lower case", Config{Issuer: "https://a.example.com", Algorithms: []string{"rs256"}}, "Algorithms", "case-sensitive"},
		{"min over max", Config{Issuer: "https://a.example.com", Refresh: Refresh{Min: time.Hour, Max: time.Minute}}, "Refresh.Min", "longer"},
		{"negative wait", Config{Issuer: "https://a.example.com", Refresh: Refresh{UnknownKIDWait: -1}}, "Refresh.UnknownKIDWait", "positive"},
		{"missing CA file", Config{Issuer: "https://a.example.com", CAFile: dir + "/none.pem"}, "CAFile", "cannot be read"},
		{"missing bearer token file", Config{Issuer: "https://a.example.com", BearerTokenFile: dir + "/none"}, "BearerTokenFile", "cannot be read"},
		{"empty bearer token file", Config{Issuer: "https://a.example.com", BearerTokenFile: empty}, "BearerTokenFile", "holds no token"},
		{"bearer token and a key file", Config{Issuer: "https://a.example.com", JWKSFile: "/x", BearerTokenFile: token}, "BearerTokenFile", "JWKSFile"},
		{"bearer token over insecure http", Config{Issuer: "http://a.example.com", InsecureHTTP: true, BearerTokenFile: token}, "BearerTokenFile", "plain http"},
		{"inline and a URL", Config{Issuer: "https://a.example.com", JWKSURI: "https://a.example.com/j", JWKS: `{"keys":[]}`}, "JWKS", "one of"},
		{"inline and a file", Config{Issuer: "https://a.example.com", JWKSFile: "/x", JWKS: `{"keys":[]}`}, "JWKS", "one of"},
		{"inline, not JSON", Config{Issuer: "https://a.example.com", JWKS: `keys: []`}, "JWKS", "not a JWKS document"},
		{"inline, no usable key", Config{Issuer: "https://a.example.com", JWKS: `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`}, "JWKS", "no usable signing key (1 skipped); key 0: symmetric"},
		{"inline, too large", Config{Issuer: "https://a.example.com", MaxResponseBytes: 10, JWKS: `{"keys":[{"kty":"oct"}]}`}, "JWKS", "over the cap"},
		{"inline and a bearer token", Config{Issuer: "https://a.example.com", JWKS: `{"keys":[]}`, BearerTokenFile: token}, "BearerTokenFile", "JWKS"},
		{"issuer check without a URL", Config{Issuer: "https://a.example.com", IssuerCheckURL: "https://a.example.com/.well-known/openid-configuration"}, "IssuerCheckURL", "without JWKSURI"},
		{"issuer check over http", Config{Issuer: "https://a.example.com", JWKSURI: "https://a.example.com/j", IssuerCheckURL: "http://a.example.com/d"}, "IssuerCheckURL", "plain http"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tc.cfg.withDefaults().validate()
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			found := false
			for _, e := range joined.Flatten(err) {
				if errors.As(e, &ce) && ce.Field == tc.field && strings.Contains(ce.Problem, tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("err = %v, want field %q with %q", err, tc.field, tc.want)
			}
		})
	}
	t.Run("every problem at once", func(t *testing.T) {
		_, _, err := Config{Issuer: "http://a.example.com", Algorithms: []string{"HS256", "none"}}.withDefaults().validate()
		if n := len(joined.Flatten(err)); n != 3 {
			t.Fatalf("%d problems reported, want 3: %v", n, err)
		}
	})
	for _, ok := range []Config{
		{Issuer: "https://auth.example.com/realms/shop"},
		{Issuer: "http://127.0.0.1:8080"},
		{Issuer: "http://localhost:8080"},
		{Issuer: "http://[::1]:8080"},
		{Issuer: "http://auth.internal", InsecureHTTP: true},
		{Issuer: "https://kubernetes.default.svc.cluster.local", JWKSURI: "https://kubernetes.default.svc/openid/v1/jwks", BearerTokenFile: token},
	} {
		if _, _, err := ok.withDefaults().validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

func TestMaxAge(t *testing.T) {
	for _, tc := range []struct {
		header []string
		want   time.Duration
		has    bool
	}{
		{nil, 0, false},
		{[]string{"public, max-age=300"}, 300 * time.Second, true},
		{[]string{"MAX-AGE=60"}, time.Minute, true},
		{[]string{`max-age="60"`}, time.Minute, true},
		{[]string{"no-cache"}, 0, true},
		{[]string{"no-store, max-age=300"}, 0, true},
		{[]string{"max-age=-1"}, 0, false},
		{[]string{"max-age=abc"}, 0, false},
		{[]string{"public", "max-age=5"}, 5 * time.Second, true},
		{[]string{"max-age=99999999999999"}, 365 * 24 * time.Hour, true},
	} {
		got, has := maxAge(tc.header)
		if got != tc.want || has != tc.has {
			t.Errorf("%q: %s %v, want %s %v", tc.header, got, has, tc.want, tc.has)
		}
	}
}

func TestJitter(t *testing.T) {
	// Up to a tenth off, never more, never added; and it does vary: a thousand draws
	// that all fall in the top or the bottom sixth of the range would be a broken jitter
	// (the chance of it by luck is under 10^-77).
	lo, hi := time.Minute, time.Duration(0)
	for range 1000 {
		d := jitter(time.Minute)
		if d > time.Minute || d < 54*time.Second {
			t.Fatalf("jitter(1m) = %s", d)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo >= 59*time.Second || hi <= 55*time.Second {
		t.Fatalf("jitter(1m) drew only from [%s, %s]", lo, hi)
	}
	// No duration, or a negative one, stays as it is; a tiny one loses at most a tenth,
	// rounded down (and nothing panics).
	for _, d := range []time.Duration{0, -time.Second} {
		if got := jitter(d); got != d {
			t.Errorf("jitter(%d) = %d", d, got)
		}
	}
	for _, d := range []time.Duration{1, 9, 10, 19} {
		if got := jitter(d); got > d || got < d-d/10 {
			t.Errorf("jitter(%d) = %d", d, got)
		}
	}
}

func mustBytes(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
