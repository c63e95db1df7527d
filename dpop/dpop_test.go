package dpop_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/dpop"
	"github.com/tokengate/tokengate/internal/testclock"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/replay"
)

const token = "an-access-token"

func newVerifier(t testing.TB, clk *testclock.Clock, mut func(*dpop.Config)) *dpop.Verifier {
	t.Helper()
	cfg := dpop.Config{ExternalURL: "https://api.example.com"}
	if mut != nil {
		mut(&cfg)
	}
	v, err := dpop.New(cfg, dpop.Options{Replay: replay.NewMemory(0, clk.Now), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidProofsOfEveryAlgorithm(t *testing.T) {
	clk := testclock.New(time.Now())
	v := newVerifier(t, clk, nil)
	for _, alg := range []string{"RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			c := clientFor(t, alg)
			r := httptest.NewRequest("GET", "/orders/1", nil)
			p, err := v.Verify(context.Background(), c.proof(t, nil, map[string]any{"ath": ath(token), "iat": clk.Now().Unix()}), r, token)
			if err != nil {
				t.Fatal(err)
			}
			want, err := jwks.Thumbprint(c.priv.Public())
			if err != nil {
				t.Fatal(err)
			}
			if p.JKT != want || p.JTI == "" || p.IssuedAt.Unix() != clk.Now().Unix() {
				t.Fatalf("proof %+v, want jkt %s", p, want)
			}
		})
	}
}

// TestAttacks runs one proof per attack that RFC 9449 §4.3's checks stop, each against
// a fresh request for GET https://api.example.com/orders/1 with the token "token".
func TestAttacks(t *testing.T) {
	clk := testclock.New(time.Now().Truncate(time.Second))
	now := clk.Now().Unix()
	es := clientFor(t, "ES256")
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]any{"ath": ath(token), "iat": now}
	with := func(m map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range good {
			out[k] = v
		}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	hmacProof := func() string { // a verifier that took k as the key would accept it
		secret := []byte("a shared secret of some length!!")
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(with(map[string]any{"jti": "x", "htm": "GET", "htu": "https://api.example.com/orders/1"})))
		tok.Header["typ"] = "dpop+jwt"
		tok.Header["jwk"] = map[string]any{"kty": "oct", "k": b64.EncodeToString(secret)}
		h, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	noneProof := func() string {
		p := es.proof(t, map[string]any{"alg": "none"}, good)
		return p[:strings.LastIndexByte(p, '.')+1]
	}
	otherSigned := func() string { // the header names es's key; another key signs
		c := &client{alg: "ES256", priv: other, jwk: es.jwk}
		return c.proof(t, nil, good)
	}
	weakProof := func() string {
		c := &client{alg: "RS256", priv: weak, jwk: map[string]any{"kty": "RSA", "n": b64.EncodeToString(weak.N.Bytes()), "e": "AQAB"}}
		return c.proof(t, nil, good)
	}
	withPrivate := func() string {
		jwk := map[string]any{}
		for k, v := range es.jwk {
			jwk[k] = v
		}
		d, err := es.priv.(*ecdsa.PrivateKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		jwk["d"] = b64.EncodeToString(d)
		return es.proof(t, map[string]any{"jwk": jwk}, good)
	}
	for _, tc := range []struct {
		attack string
		proof  func() string
		want   error
	}{
		{"a proof for another method", func() string { return es.proof(t, nil, with(map[string]any{"htm": "POST"})) }, dpop.ErrInvalidProof},
		{"a proof for a lower-case method", func() string { return es.proof(t, nil, with(map[string]any{"htm": "get"})) }, dpop.ErrInvalidProof},
		{"a proof for another path", func() string {
			return es.proof(t, nil, with(map[string]any{"htu": "https://api.example.com/orders/2"}))
		}, dpop.ErrInvalidProof},
		{"a proof for another host", func() string {
			return es.proof(t, nil, with(map[string]any{"htu": "https://evil.example/orders/1"}))
		}, dpop.ErrInvalidProof},
		{"a proof for plain http", func() string {
			return es.proof(t, nil, with(map[string]any{"htu": "http://api.example.com/orders/1"}))
		}, dpop.ErrInvalidProof},
		{"a proof for another port", func() string {
			return es.proof(t, nil, with(map[string]any{"htu": "https://api.example.com:8443/orders/1"}))
		}, dpop.ErrInvalidProof},
		{"a proof for another token (ath)", func() string { return es.proof(t, nil, with(map[string]any{"ath": ath("another token")})) }, dpop.ErrInvalidProof},
		{"a proof without ath for a token", func() string { return es.proof(t, nil, with(map[string]any{"ath": nil})) }, dpop.ErrInvalidProof},
		{"a proof signed by another key than its jwk", otherSigned, dpop.ErrInvalidProof},
		{"alg none", noneProof, dpop.ErrInvalidProof},
		{"HS256 with a shared secret", hmacProof, dpop.ErrInvalidProof},
		{"a private key in jwk", withPrivate, dpop.ErrInvalidProof},
		{"a jwk of another type than alg", func() string { return es.proof(t, map[string]any{"alg": "RS256"}, good) }, dpop.ErrInvalidProof},
		{"a 1024-bit RSA key", weakProof, dpop.ErrInvalidProof},
		{"no jwk", func() string { return es.proof(t, map[string]any{"jwk": nil}, good) }, dpop.ErrInvalidProof},
		{"typ JWT", func() string { return es.proof(t, map[string]any{"typ": "JWT"}, good) }, dpop.ErrInvalidProof},
		{"no typ", func() string { return es.proof(t, map[string]any{"typ": nil}, good) }, dpop.ErrInvalidProof},
		{"typ of another media type", func() string { return es.proof(t, map[string]any{"typ": "application/jwt"}, good) }, dpop.ErrInvalidProof},
		{"typ with another prefix", func() string { return es.proof(t, map[string]any{"typ": "text/dpop+jwt"}, good) }, dpop.ErrInvalidProof},
		{"critical header parameters", func() string { return es.proof(t, map[string]any{"crit": []string{"exp"}}, good) }, dpop.ErrInvalidProof},
		{"a changed claim", func() string { return tamper(es.proof(t, nil, good), 1) }, dpop.ErrInvalidProof},
		{"a changed signature", func() string { return tamper(es.proof(t, nil, good), 2) }, dpop.ErrInvalidProof},
		{"a proof from the future", func() string { return es.proof(t, nil, with(map[string]any{"iat": now + 6})) }, dpop.ErrInvalidProof},
		{"a proof too old", func() string { return es.proof(t, nil, with(map[string]any{"iat": now - 61})) }, dpop.ErrInvalidProof},
		{"iat as a string", func() string { return es.proof(t, nil, with(map[string]any{"iat": "now"})) }, dpop.ErrInvalidProof},
		{"no jti", func() string { return es.proof(t, nil, with(map[string]any{"jti": nil})) }, dpop.ErrInvalidProof},
		{"an empty jti", func() string { return es.proof(t, nil, with(map[string]any{"jti": ""})) }, dpop.ErrInvalidProof},
		{"a jti of 257 bytes", func() string { return es.proof(t, nil, with(map[string]any{"jti": strings.Repeat("j", 257)})) }, dpop.ErrInvalidProof},
		{"no htm", func() string { return es.proof(t, nil, with(map[string]any{"htm": nil})) }, dpop.ErrInvalidProof},
		{"no htu", func() string { return es.proof(t, nil, with(map[string]any{"htu": nil})) }, dpop.ErrInvalidProof},
		{"no iat", func() string { return es.proof(t, nil, with(map[string]any{"iat": nil})) }, dpop.ErrInvalidProof},
		{"an htu that is not a URL", func() string { return es.proof(t, nil, with(map[string]any{"htu": "orders/1"})) }, dpop.ErrInvalidProof},
		{"no proof", func() string { return "" }, dpop.ErrInvalidProof},
		{"two segments", func() string { p := es.proof(t, nil, good); return p[:strings.LastIndexByte(p, '.')] }, dpop.ErrInvalidProof},
		{"an oversized proof", func() string {
			return es.proof(t, nil, with(map[string]any{"pad": strings.Repeat("x", dpop.MaxProofBytes)}))
		}, dpop.ErrInvalidProof},
		{"a header that is not JSON", func() string { return "bm90IGpzb24." + strings.SplitN(es.proof(t, nil, good), ".", 2)[1] }, dpop.ErrInvalidProof},
	} {
		t.Run(tc.attack, func(t *testing.T) {
			v := newVerifier(t, clk, nil)
			r := httptest.NewRequest("GET", "/orders/1", nil)
			p, err := v.Verify(context.Background(), tc.proof(), r, token)
			if !errors.Is(err, tc.want) || p != nil {
				t.Fatalf("Verify = %+v, %v; want %v", p, err, tc.want)
			}
			var e *dpop.Error
			if !errors.As(err, &e) {
				t.Fatalf("%T is not a *dpop.Error", err)
			}
		})
	}
}

func TestReplay(t *testing.T) {
	clk := testclock.New(time.Now().Truncate(time.Second))
	v := newVerifier(t, clk, nil)
	es, ed := clientFor(t, "ES256"), clientFor(t, "EdDSA")
	r := httptest.NewRequest("GET", "/orders/1", nil)
	claims := map[string]any{"jti": "jti-1", "iat": clk.Now().Unix(), "ath": ath(token)}
	p := es.proof(t, nil, claims)
	if _, err := v.Verify(context.Background(), p, r, token); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), p, r, token); !errors.Is(err, dpop.ErrReplay) {
		t.Fatalf("the same proof again: %v", err)
	}
	// The same jti from another key is another record: no client can use up another's.
	if _, err := v.Verify(context.Background(), ed.proof(t, nil, claims), r, token); err != nil {
		t.Fatalf("another key's proof with the same jti: %v", err)
	}
	// A proof that fails a check does not spend its jti.
	bad := es.proof(t, nil, map[string]any{"jti": "jti-2", "iat": clk.Now().Unix(), "ath": ath("other")})
	if _, err := v.Verify(context.Background(), bad, r, token); !errors.Is(err, dpop.ErrInvalidProof) {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), es.proof(t, nil, map[string]any{"jti": "jti-2", "iat": clk.Now().Unix(), "ath": ath(token)}), r, token); err != nil {
		t.Fatalf("a jti that only a refused proof carried: %v", err)
	}
	// The record outlives the proof's window: a replay just before the proof gets too
	// old is refused; after, the age check refuses it.
	clk.Advance(60 * time.Second)
	if _, err := v.Verify(context.Background(), p, r, token); !errors.Is(err, dpop.ErrReplay) {
		t.Fatalf("a replay at the end of the window: %v", err)
	}
	clk.Advance(time.Second)
	if _, err := v.Verify(context.Background(), p, r, token); !errors.Is(err, dpop.ErrInvalidProof) {
		t.Fatalf("a replay after the window: %v", err)
	}
}

func TestStoreUnavailableFailsClosed(t *testing.T) {
	clk := testclock.New(time.Now())
	v := newVerifier(t, clk, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the store cannot answer
	p, err := v.Verify(ctx, clientFor(t, "ES256").proof(t, nil, map[string]any{"ath": ath(token), "iat": clk.Now().Unix()}), httptest.NewRequest("GET", "/orders/1", nil), token)
	if !errors.Is(err, dpop.ErrStoreUnavailable) || !errors.Is(err, context.Canceled) || p != nil {
		t.Fatalf("Verify with a store that cannot answer = %v, %v", p, err)
	}
}

func TestHTU(t *testing.T) {
	clk := testclock.New(time.Now())
	es := clientFor(t, "ES256")
	for _, tc := range []struct {
		name, external, target, htu string
		ok                          bool
	}{
		{"exact", "https://api.example.com", "/orders/1", "https://api.example.com/orders/1", true},
		{"query and fragment ignored", "https://api.example.com", "/orders/1?x=1", "https://api.example.com/orders/1?y=2#f", true},
		{"scheme and host case, default port", "https://api.example.com", "/orders/1", "HTTPS://API.Example.COM:443/orders/1", true},
		{"an encoded unreserved character", "https://api.example.com", "/orders/1", "https://api.example.com/%6Frders/1", true},
		{"percent-encoding case", "https://api.example.com", "/a%2fb", "https://api.example.com/a%2Fb", true},
		{"dot segments", "https://api.example.com", "/orders/1", "https://api.example.com/x/../orders/./1", true},
		{"an empty path is /", "https://api.example.com", "/", "https://api.example.com", true},
		{"a path prefix of the external URL", "https://example.com/api/", "/orders/1", "https://example.com/api/orders/1", true},
		{"the prefix is required", "https://example.com/api", "/orders/1", "https://example.com/orders/1", false},
		{"path case matters", "https://api.example.com", "/orders/1", "https://api.example.com/Orders/1", false},
		{"an encoded slash is not a slash", "https://api.example.com", "/a/b", "https://api.example.com/a%2Fb", false},
		{"a non-default port", "https://api.example.com:8443", "/orders/1", "https://api.example.com:8443/orders/1", true},
		{"IPv6", "https://[::1]:8443", "/x", "https://[::1]:8443/x", true},
		{"user information", "https://api.example.com", "/orders/1", "https://user@api.example.com/orders/1", false},
		{"a malformed encoding", "https://api.example.com", "/orders/1", "https://api.example.com/orders/%4", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, clk, func(c *dpop.Config) { c.ExternalURL = tc.external })
			r := httptest.NewRequest("GET", tc.target, nil)
			// What the client sends about the host never counts.
			r.Host = "evil.example"
			r.Header.Set("X-Forwarded-Host", "evil.example")
			r.Header.Set("X-Forwarded-Proto", "http")
			_, err := v.Verify(context.Background(), es.proof(t, nil, map[string]any{"htu": tc.htu, "iat": clk.Now().Unix()}), r, "")
			if (err == nil) != tc.ok {
				t.Fatalf("htu %q for %s%s: %v, want ok %v", tc.htu, tc.external, tc.target, err, tc.ok)
			}
		})
	}
}

func TestIATWindow(t *testing.T) {
	clk := testclock.New(time.Now().Truncate(time.Second))
	es := clientFor(t, "ES256")
	now := clk.Now().Unix()
	for _, tc := range []struct {
		name string
		iat  any
		mut  func(*dpop.Config)
		ok   bool
	}{
		{"now", now, nil, true},
		{"60 s old, the default maximum", now - 60, nil, true},
		{"61 s old", now - 61, nil, false},
		{"5 s ahead, the default leeway", now + 5, nil, true},
		{"6 s ahead", now + 6, nil, false},
		{"a fraction of a second", float64(now) + 0.5, nil, true},
		{"10 s old with MaxAge 5s", now - 10, func(c *dpop.Config) { c.MaxAge = 5 * time.Second }, false},
		{"20 s ahead with Leeway 30s", now + 20, func(c *dpop.Config) { c.Leeway = 30 * time.Second }, true},
		{"1 s ahead with no leeway", now + 1, func(c *dpop.Config) { c.Leeway = -1 }, false},
		{"now with no leeway", now, func(c *dpop.Config) { c.Leeway = -1 }, true},
		{"negative", -1, nil, false},
		{"far beyond any date", 1e300, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, clk, tc.mut)
			_, err := v.Verify(context.Background(), es.proof(t, nil, map[string]any{"iat": tc.iat}), httptest.NewRequest("GET", "/orders/1", nil), "")
			if (err == nil) != tc.ok {
				t.Fatalf("iat %v: %v, want ok %v", tc.iat, err, tc.ok)
			}
		})
	}
}

func TestAlgorithmsAllowlist(t *testing.T) {
	clk := testclock.New(time.Now())
	v := newVerifier(t, clk, func(c *dpop.Config) { c.Algorithms = []string{"ES256"} })
	r := httptest.NewRequest("GET", "/orders/1", nil)
	if _, err := v.Verify(context.Background(), clientFor(t, "EdDSA").proof(t, nil, map[string]any{"iat": clk.Now().Unix()}), r, ""); !errors.Is(err, dpop.ErrInvalidProof) {
		t.Fatalf("an EdDSA proof with only ES256 allowed: %v", err)
	}
	if _, err := v.Verify(context.Background(), clientFor(t, "ES256").proof(t, nil, map[string]any{"iat": clk.Now().Unix()}), r, ""); err != nil {
		t.Fatal(err)
	}
	algs := v.Algorithms()
	algs[0] = "none"
	if v.Algorithms()[0] != "ES256" {
		t.Fatal("Algorithms hands out the Verifier's own slice")
	}
}

func TestNonces(t *testing.T) {
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	secret := []byte(strings.Repeat("s", 32))
	nonced := func(c *dpop.Config) { c.NonceSecret = secret; c.NoncePeriod = time.Minute }
	v := newVerifier(t, clk, nonced)
	replica := newVerifier(t, clk, nonced)
	stranger := newVerifier(t, clk, func(c *dpop.Config) { c.NonceSecret = []byte(strings.Repeat("t", 32)) })
	es := clientFor(t, "ES256")
	r := httptest.NewRequest("GET", "/orders/1", nil)
	verify := func(v *dpop.Verifier, nonce any) error {
		_, err := v.Verify(context.Background(), es.proof(t, nil, map[string]any{"nonce": nonce, "iat": clk.Now().Unix()}), r, "")
		return err
	}
	if err := verify(v, nil); !errors.Is(err, dpop.ErrUseNonce) {
		t.Fatalf("no nonce: %v", err)
	}
	n := v.Nonce()
	if n == "" || newVerifier(t, clk, nil).Nonce() != "" {
		t.Fatal("Nonce with nonces on and off")
	}
	if err := verify(v, n); err != nil {
		t.Fatalf("the server's own nonce: %v", err)
	}
	if err := verify(replica, n); err != nil {
		t.Fatalf("a replica with the same secret: %v", err)
	}
	if err := verify(stranger, n); !errors.Is(err, dpop.ErrUseNonce) {
		t.Fatalf("a server with another secret: %v", err)
	}
	if err := verify(v, tamperNonce(n)); !errors.Is(err, dpop.ErrUseNonce) {
		t.Fatalf("a forged nonce: %v", err)
	}
	if err := verify(v, "not base64!"); !errors.Is(err, dpop.ErrUseNonce) {
		t.Fatalf("garbage: %v", err)
	}
	clk.Advance(time.Minute) // the next slot: still good
	if err := verify(v, n); err != nil {
		t.Fatalf("a nonce of the previous period: %v", err)
	}
	clk.Advance(time.Minute) // two periods on: stale
	if err := verify(v, n); !errors.Is(err, dpop.ErrUseNonce) {
		t.Fatalf("a nonce two periods old: %v", err)
	}
	// A nonce from the future (a clock that ran ahead) is no better.
	ahead := newVerifier(t, testclock.New(clk.Now().Add(2*time.Minute)), nonced)
	if err := verify(v, ahead.Nonce()); !errors.Is(err, dpop.ErrUseNonce) {
		t.Fatalf("a nonce of a later period: %v", err)
	}
}

func tamperNonce(n string) string {
	b := []byte(n)
	if b[len(b)-1] == 'A' {
		b[len(b)-1] = 'B'
	} else {
		b[len(b)-1] = 'A'
	}
	return string(b)
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   dpop.Config
		field string
	}{
		{"no external URL", dpop.Config{}, "ExternalURL"},
		{"a relative external URL", dpop.Config{ExternalURL: "api.example.com"}, "ExternalURL"},
		{"a query", dpop.Config{ExternalURL: "https://api.example.com/?a=1"}, "ExternalURL"},
		{"a fragment", dpop.Config{ExternalURL: "https://api.example.com/#x"}, "ExternalURL"},
		{"ftp", dpop.Config{ExternalURL: "ftp://api.example.com"}, "ExternalURL"},
		{"HS256", dpop.Config{ExternalURL: "https://a.example", Algorithms: []string{"HS256"}}, "Algorithms"},
		{"none", dpop.Config{ExternalURL: "https://a.example", Algorithms: []string{"none"}}, "Algorithms"},
		{"no algorithms", dpop.Config{ExternalURL: "https://a.example", Algorithms: []string{}}, "Algorithms"},
		{"a negative MaxAge", dpop.Config{ExternalURL: "https://a.example", MaxAge: -time.Second}, "MaxAge"},
		{"a short nonce secret", dpop.Config{ExternalURL: "https://a.example", NonceSecret: []byte("short")}, "NonceSecret"},
		{"a nonce period under a second", dpop.Config{ExternalURL: "https://a.example", NonceSecret: make([]byte, 32), NoncePeriod: time.Millisecond}, "NoncePeriod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := dpop.New(tc.cfg, dpop.Options{})
			var ce *dpop.ConfigError
			if v != nil || !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("New = %v, %v; want a problem with %s", v, err, tc.field)
			}
		})
	}
}

func TestBoundsAreInclusive(t *testing.T) {
	clk := testclock.New(time.Now().Truncate(time.Second))
	es := clientFor(t, "ES256")
	r := httptest.NewRequest("GET", "/orders/1", nil)
	now := clk.Now().Unix()
	verify := func(p string) error {
		_, err := newVerifier(t, clk, nil).Verify(context.Background(), p, r, "")
		return err
	}
	if err := verify(es.proof(t, nil, map[string]any{"jti": strings.Repeat("j", 256), "iat": now})); err != nil {
		t.Fatalf("a jti of 256 bytes: %v", err)
	}
	// A proof of exactly MaxProofBytes, by padding a claim until it fits.
	var exact string
	for pad := dpop.MaxProofBytes * 3 / 4; pad > 0 && exact == ""; pad-- {
		p := es.proof(t, nil, map[string]any{"iat": now, "pad": strings.Repeat("x", pad)})
		if len(p) == dpop.MaxProofBytes {
			exact = p
		}
	}
	if exact == "" {
		t.Fatal("no padding made a proof of exactly MaxProofBytes")
	}
	if err := verify(exact); err != nil {
		t.Fatalf("a proof of exactly %d bytes: %v", dpop.MaxProofBytes, err)
	}
	p, err := newVerifier(t, clk, nil).Verify(context.Background(), es.proof(t, nil, map[string]any{"iat": float64(now) - 0.25}), r, "")
	if err != nil || !p.IssuedAt.Equal(time.Unix(now-1, 750_000_000)) {
		t.Fatalf("a fractional iat: %v, %v", p, err)
	}
	if _, err := dpop.New(dpop.Config{ExternalURL: "https://a.example", NonceSecret: make([]byte, 32), NoncePeriod: time.Second}, dpop.Options{}); err != nil {
		t.Fatalf("a nonce period of one second: %v", err)
	}
}

func TestTypIsAMediaType(t *testing.T) {
	clk := testclock.New(time.Now())
	es := clientFor(t, "ES256")
	for _, typ := range []string{"dpop+jwt", "DPoP+JWT", "application/dpop+jwt", "Application/DPOP+jwt"} {
		_, err := newVerifier(t, clk, nil).Verify(context.Background(), es.proof(t, map[string]any{"typ": typ}, map[string]any{"iat": clk.Now().Unix()}), httptest.NewRequest("GET", "/orders/1", nil), "")
		if err != nil {
			t.Errorf("typ %q: %v", typ, err)
		}
	}
}

// TestMemberNamesAreExact: JOSE member names are compared exactly (RFC 7515 §5.3), so
// "HTM" is not htm, and a member twice is refused whatever value comes last.
func TestMemberNamesAreExact(t *testing.T) {
	clk := testclock.New(time.Now())
	v := newVerifier(t, clk, nil)
	c := clientFor(t, "ES256")
	hdr := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": c.jwk}
	claims := func(extra string) json.RawMessage {
		return json.RawMessage(`{"jti":"` + rand.Text() + `","htu":"https://api.example.com/orders/1","iat":` +
			strconv.FormatInt(clk.Now().Unix(), 10) + `,"ath":"` + ath(token) + `"` + extra + `}`)
	}
	for name, proof := range map[string]string{
		"htm in upper case":    c.sign(t, hdr, claims(`,"HTM":"GET"`)),
		"htm twice":            c.sign(t, hdr, claims(`,"htm":"POST","htm":"GET"`)),
		"alg in upper case":    c.sign(t, map[string]any{"typ": "dpop+jwt", "ALG": "ES256", "jwk": c.jwk}, claims(`,"htm":"GET"`)),
		"jwk twice":            c.sign(t, json.RawMessage(`{"typ":"dpop+jwt","alg":"ES256","jwk":{},"jwk":`+mustJSON(t, c.jwk)+`}`), claims(`,"htm":"GET"`)),
		"an array, not object": c.sign(t, hdr, json.RawMessage(`[1]`)),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), proof, httptest.NewRequest("GET", "/orders/1", nil), token)
			if !errors.Is(err, dpop.ErrInvalidProof) {
				t.Errorf("error %v, want ErrInvalidProof", err)
			}
		})
	}
	good := c.sign(t, hdr, claims(`,"htm":"GET","HTM":"POST"`))
	if _, err := v.Verify(context.Background(), good, httptest.NewRequest("GET", "/orders/1", nil), token); err != nil {
		t.Errorf("an unknown member HTM beside htm: %v", err)
	}
}

// TestHeaderCache: a second proof with the same header (the cache) is held to every
// check of the claims, and a header of a proof that failed is not remembered.
func TestHeaderCache(t *testing.T) {
	clk := testclock.New(time.Now())
	v := newVerifier(t, clk, nil)
	c := clientFor(t, "ES256")
	r := func() *http.Request { return httptest.NewRequest("GET", "/orders/1", nil) }
	good := map[string]any{"ath": ath(token), "iat": clk.Now().Unix()}
	for i := range 3 {
		if _, err := v.Verify(context.Background(), c.proof(t, nil, good), r(), token); err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
	}
	for name, claims := range map[string]map[string]any{
		"another method": {"ath": ath(token), "iat": clk.Now().Unix(), "htm": "POST"},
		"too old":        {"ath": ath(token), "iat": clk.Now().Add(-time.Hour).Unix()},
		"another token":  {"ath": ath("other"), "iat": clk.Now().Unix()},
	} {
		if _, err := v.Verify(context.Background(), c.proof(t, nil, claims), r(), token); !errors.Is(err, dpop.ErrInvalidProof) {
			t.Errorf("%s with a known header: %v", name, err)
		}
	}
	forged := tamper(c.proof(t, nil, good), 2)
	if _, err := v.Verify(context.Background(), forged, r(), token); !errors.Is(err, dpop.ErrInvalidProof) {
		t.Errorf("a bad signature with a known header: %v", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
