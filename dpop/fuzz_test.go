package dpop_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/dpop"
	"github.com/tokengate/tokengate/replay"
)

// fuzzNow is the fuzz verifiers' clock. It never moves, so that a proof in the committed
// corpus (testdata/fuzz) stays inside its iat window and keeps testing what it tested.
var fuzzNow = time.Unix(1_800_000_000, 0)

// fuzzAlgs are the algorithms FuzzProof's verifiers allow. The PS256, ES384 and ES512
// clients sign seeds too: proofs a verifier must refuse although their signatures are
// good (PS256 with the very RSA key that RS256 may use).
var fuzzAlgs = []string{"RS256", "ES256", "EdDSA"}

// fuzzNonceSecret is the nonced verifier's secret.
var fuzzNonceSecret = []byte(strings.Repeat("n", 32))

// fuzzClients are the helpers' clients, with keys derived from fixed seeds instead of
// clientFor's random ones: the fuzzing engine's workers are other processes, and the
// proofs of the seed corpus, signed in the first, must verify with their keys.
var fuzzClients = sync.OnceValue(func() map[string]*client {
	r := rand.New(rand.NewChaCha8([32]byte([]byte("tokengate dpop fuzz keys, fixed."))))
	octets := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	prime := func() *big.Int { // the first prime after 1024 random bits, the top two set
		b := octets(128)
		b[0] |= 0xc0
		p := new(big.Int).SetBytes(b)
		for p.SetBit(p, 0, 1); !p.ProbablyPrime(20); p.Add(p, big.NewInt(2)) {
		}
		return p
	}
	one := big.NewInt(1)
	p, q := prime(), prime()
	pm, qm := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
	lcm := new(big.Int).Div(new(big.Int).Mul(pm, qm), new(big.Int).GCD(nil, nil, pm, qm))
	rk := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537}, Primes: []*big.Int{p, q}}
	rk.D = new(big.Int).ModInverse(big.NewInt(65537), lcm)
	rk.Precompute()
	if err := rk.Validate(); err != nil {
		panic(err)
	}
	cs := map[string]*client{
		"RS256": {alg: "RS256", priv: rk, jwk: map[string]any{"kty": "RSA", "n": b64.EncodeToString(rk.N.Bytes()), "e": "AQAB"}},
	}
	cs["PS256"] = &client{alg: "PS256", priv: rk, jwk: cs["RS256"].jwk}
	for _, alg := range []string{"ES256", "ES384", "ES512"} {
		curve := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		size := (curve.Params().BitSize + 7) / 8
		d := octets(size)
		d[0] = 0 // below the curve's order
		ek, err := ecdsa.ParseRawPrivateKey(curve, d)
		if err != nil {
			panic(err)
		}
		point, err := ek.PublicKey.Bytes()
		if err != nil {
			panic(err)
		}
		cs[alg] = &client{alg: alg, priv: ek, jwk: map[string]any{"kty": "EC", "crv": curve.Params().Name,
			"x": b64.EncodeToString(point[1 : 1+size]), "y": b64.EncodeToString(point[1+size:])}}
	}
	ed := ed25519.NewKeyFromSeed(octets(ed25519.SeedSize))
	cs["EdDSA"] = &client{alg: "EdDSA", priv: ed, jwk: map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64.EncodeToString(ed.Public().(ed25519.PublicKey))}}
	return cs
})

// downStore is a replay store that cannot answer.
type downStore struct{}

func (downStore) Use(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("the store is down")
}

var _ replay.Store = downStore{}

func fuzzVerifier(t testing.TB, store replay.Store, nonces bool) *dpop.Verifier {
	t.Helper()
	cfg := dpop.Config{ExternalURL: "https://api.example.com", Algorithms: fuzzAlgs}
	if nonces {
		cfg.NonceSecret = fuzzNonceSecret
	}
	v, err := dpop.New(cfg, dpop.Options{Replay: store, Now: func() time.Time { return fuzzNow }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// class is the one sentinel err matches; it fails t when err is not a *dpop.Error of
// exactly one class.
func class(t *testing.T, err error) error {
	t.Helper()
	var e *dpop.Error
	if !errors.As(err, &e) {
		t.Fatalf("%T %v is not a *dpop.Error", err, err)
	}
	var found []error
	for _, c := range []error{dpop.ErrInvalidProof, dpop.ErrUseNonce, dpop.ErrReplay, dpop.ErrStoreUnavailable} {
		if errors.Is(err, c) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%v matches %d classes, want exactly one: %v", err, len(found), found)
	}
	return found[0]
}

// fuzzSeeds are real proofs from the test clients and mutations of them, all for the
// fuzz verifiers' request: GET https://api.example.com/orders/1 with token, at fuzzNow.
func fuzzSeeds(f *testing.F) []string {
	now := fuzzNow.Unix()
	good := map[string]any{"ath": ath(token), "iat": now}
	with := func(m map[string]any) map[string]any {
		out := map[string]any{"ath": ath(token), "iat": now}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	cs := fuzzClients()
	es, ed, rs := cs["ES256"], cs["EdDSA"], cs["RS256"]
	// raw signs a header and claims written by hand: duplicate members, numbers that
	// no Go value holds, bytes that are not UTF-8.
	raw := func(c *client, header, claims string) string {
		input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(claims))
		sig, err := jwt.GetSigningMethod(c.alg).Sign(input, c.priv)
		if err != nil {
			f.Fatal(err)
		}
		return input + "." + b64.EncodeToString(sig)
	}
	jwkJSON := func(c *client) string {
		b, err := json.Marshal(c.jwk)
		if err != nil {
			f.Fatal(err)
		}
		return string(b)
	}
	claimsJSON := fmt.Sprintf(`{"jti":"j","htm":"GET","htu":"https://api.example.com/orders/1","iat":%d,"ath":%q}`, now, ath(token))
	hdr := func(c *client, alg string) string {
		return fmt.Sprintf(`{"typ":"dpop+jwt","alg":%q,"jwk":%s}`, alg, jwkJSON(c))
	}
	private := map[string]any{}
	for k, v := range es.jwk {
		private[k] = v
	}
	d, err := es.priv.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		f.Fatal(err)
	}
	private["d"] = b64.EncodeToString(d)

	var seeds []string
	for _, alg := range []string{"RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"} {
		seeds = append(seeds, cs[alg].proof(f, nil, good))
	}
	p1, p2 := es.proof(f, nil, good), ed.proof(f, nil, good)
	none := es.proof(f, map[string]any{"alg": "none"}, good)
	seeds = append(seeds,
		// Two DPoP headers that a proxy folded into one, or a proof twice.
		p1+","+p2, p1+", "+p2, p1+"."+p1, p1+" ", " "+p1, p1+"\x00",
		// alg none, with and without its signature; alg HS256 over a public key; two
		// algs, of which the last counts (RFC 7515 §4 allows that reading).
		none, none[:strings.LastIndexByte(none, '.')+1],
		es.proof(f, map[string]any{"alg": "HS256"}, good),
		raw(es, `{"typ":"dpop+jwt","alg":"none","alg":"ES256","jwk":`+jwkJSON(es)+`}`, claimsJSON),
		raw(es, `{"typ":"dpop+jwt","alg":"ES256","alg":"none","jwk":`+jwkJSON(es)+`}`, claimsJSON),
		// Private key material in the jwk.
		es.proof(f, map[string]any{"jwk": private}, good),
		// Duplicate members: of the header, of the jwk, of the claims.
		raw(es, `{"typ":"JWT","typ":"dpop+jwt","alg":"ES256","jwk":`+jwkJSON(ed)+`,"jwk":`+jwkJSON(es)+`}`, claimsJSON),
		raw(es, `{"typ":"dpop+jwt","alg":"ES256","jwk":`+jwkJSON(es)+`,"jwk":`+jwkJSON(ed)+`}`, claimsJSON),
		raw(es, hdr(es, "ES256"), strings.Replace(claimsJSON, `"htm":"GET"`, `"htm":"POST","htm":"GET"`, 1)),
		raw(es, hdr(es, "ES256"), strings.Replace(claimsJSON, `"htm":"GET"`, `"htm":"GET","htm":"POST"`, 1)),
		raw(es, fmt.Sprintf(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":%q,"x":%q,"y":%q}}`, ed.jwk["x"], es.jwk["x"], es.jwk["y"]), claimsJSON),
		// Huge and odd numbers.
		raw(es, hdr(es, "ES256"), strings.Replace(claimsJSON, fmt.Sprint(now), "1e400", 1)),
		raw(es, hdr(es, "ES256"), strings.Replace(claimsJSON, fmt.Sprint(now), "-1e400", 1)),
		raw(es, hdr(es, "ES256"), strings.Replace(claimsJSON, fmt.Sprint(now), "1e-400", 1)),
		raw(es, hdr(es, "ES256"), strings.Replace(claimsJSON, fmt.Sprint(now), "18000000000000000000000000000000", 1)),
		raw(es, hdr(es, "ES256"), strings.Replace(claimsJSON, fmt.Sprint(now), fmt.Sprint(now)+".999999999999", 1)),
		raw(es, hdr(es, "ES256"), strings.Replace(claimsJSON, fmt.Sprint(now), fmt.Sprintf("%d.0e0", now), 1)),
		raw(es, hdr(es, "ES256"), strings.Replace(claimsJSON, `"jti":"j"`, `"jti":1e400`, 1)),
		rs.proof(f, map[string]any{"jwk": map[string]any{"kty": "RSA", "n": rs.jwk["n"], "e": b64.EncodeToString(bytes.Repeat([]byte{0xff}, 600))}}, good),
		// Bytes that are not UTF-8, in the claims and the header.
		raw(es, hdr(es, "ES256"), strings.Replace(claimsJSON, `"jti":"j"`, "\"jti\":\"\xff\xfe\"", 1)),
		raw(es, hdr(es, "ES256"), strings.Replace(claimsJSON, `orders/1`, "orders/1\xc3", 1)),
		raw(es, strings.Replace(hdr(es, "ES256"), `dpop+jwt`, "dpop+jwt\xff", 1), claimsJSON),
		// A proof carrying a nonce the nonced verifier issued.
		es.proof(f, nil, with(map[string]any{"nonce": fuzzVerifier(f, nil, true).Nonce()})),
		// Base64url spellings with nonzero padding bits (RFC 4648 §3.5), which the
		// package decodes: JKT is the thumbprint of the key, not of the spelling.
		noncanonical(p1),
		raw(es, strings.Replace(hdr(es, "ES256"), es.jwk["x"].(string), noncanonical(es.jwk["x"].(string)), 1), claimsJSON),
		// Mutations that break the signature.
		tamper(p1, 0), tamper(p1, 1), tamper(p1, 2),
		"", ".", "..", "...", "a.b.c", strings.Repeat("A", dpop.MaxProofBytes+1),
	)
	return seeds
}

// FuzzProof sends arbitrary proofs to verifiers (nonces off and on, a working and a
// broken replay store) for one fixed request. Nothing panics; every error is a
// *dpop.Error of exactly one class; a proof is accepted only when one of the test's own
// keys, of an allowed algorithm, signed it, and then its JKT is the RFC 7638 thumbprint
// of its jwk, computed here, and the same proof again is a replay; a broken store
// refuses exactly the proofs that pass every other check.
func FuzzProof(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	var keys []crypto.PublicKey // every key the test holds
	for _, alg := range []string{"RS256", "ES256", "ES384", "ES512", "EdDSA"} {
		keys = append(keys, fuzzClients()[alg].priv.Public())
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, proof string) {
		r := httptest.NewRequest("GET", "/orders/1", nil)
		var plainErr error
		for _, nonces := range []bool{false, true} {
			v := fuzzVerifier(t, replay.NewMemory(0, func() time.Time { return fuzzNow }), nonces)
			p, err := v.Verify(ctx, proof, r, token)
			if !nonces {
				plainErr = err
			}
			if err != nil {
				if p != nil {
					t.Fatalf("Verify returned a proof and an error: %+v, %v", p, err)
				}
				if c := class(t, err); c == dpop.ErrReplay || c == dpop.ErrStoreUnavailable {
					t.Fatalf("a fresh, working store: %v", err)
				}
				continue
			}
			checkAccepted(t, proof, p, keys)
			if _, err := v.Verify(ctx, proof, r, token); !errors.Is(err, dpop.ErrReplay) || class(t, err) != dpop.ErrReplay {
				t.Fatalf("the same proof a second time: %v", err)
			}
		}
		p, err := fuzzVerifier(t, downStore{}, false).Verify(ctx, proof, r, token)
		if err == nil || p != nil {
			t.Fatalf("accepted with a store that cannot answer: %+v, %v", p, err)
		}
		switch c := class(t, err); {
		case plainErr == nil && c != dpop.ErrStoreUnavailable:
			t.Fatalf("a good proof with a broken store: %v, want %v", err, dpop.ErrStoreUnavailable)
		case plainErr != nil && c != class(t, plainErr):
			t.Fatalf("a bad proof with a broken store: %v, want the class of %v", err, plainErr)
		}
	})
}

// checkAccepted holds an accepted proof to what only its signer could have made, read
// here without the package's parser.
func checkAccepted(t *testing.T, proof string, p *dpop.Proof, keys []crypto.PublicKey) {
	t.Helper()
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		t.Fatalf("accepted %d segments", len(parts))
	}
	var hdr struct {
		Alg string          `json:"alg"`
		JWK json.RawMessage `json:"jwk"`
	}
	var hm map[string]json.RawMessage
	if err := unmarshalSegment(parts[0], &hm); err != nil {
		t.Fatalf("accepted a header that is not a JSON object: %v", err)
	}
	// Member names are case-sensitive (RFC 7515 §4): only "alg" and "jwk" count.
	if err := json.Unmarshal(hm["alg"], &hdr.Alg); err != nil {
		t.Fatalf("accepted a header without a string alg: %s", hm["alg"])
	}
	hdr.JWK = hm["jwk"]
	if !slices.Contains(fuzzAlgs, hdr.Alg) {
		t.Fatalf("accepted alg %q, allowed %v", hdr.Alg, fuzzAlgs)
	}
	i := slices.IndexFunc(keys, func(k crypto.PublicKey) bool {
		return k.(interface{ Equal(crypto.PublicKey) bool }).Equal(p.Key)
	})
	if i < 0 {
		t.Fatalf("accepted a proof whose key (%T) is none the test holds: nobody signed it", p.Key)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("accepted a signature that is not base64url: %v", err)
	}
	if !verifySignature(hdr.Alg, keys[i], parts[0]+"."+parts[1], sig) {
		t.Fatalf("accepted a proof whose signature does not verify as %s with the key it names", hdr.Alg)
	}
	jkt, err := thumbprintOf(hdr.JWK)
	if err != nil {
		t.Fatalf("accepted a jwk: %v", err)
	}
	if p.JKT != jkt {
		t.Fatalf("JKT %s, the jwk's RFC 7638 thumbprint is %s", p.JKT, jkt)
	}
	var claims map[string]json.RawMessage
	if err := unmarshalSegment(parts[1], &claims); err != nil {
		t.Fatalf("accepted claims that are not a JSON object: %v", err)
	}
	var jti, athClaim string
	if json.Unmarshal(claims["jti"], &jti) != nil || jti != p.JTI || json.Unmarshal(claims["ath"], &athClaim) != nil || athClaim != ath(token) {
		t.Fatalf("accepted jti %s, ath %s; Proof.JTI %q", claims["jti"], claims["ath"], p.JTI)
	}
	if age := fuzzNow.Sub(p.IssuedAt); age > dpop.DefaultMaxAge || -age > dpop.DefaultLeeway {
		t.Fatalf("accepted iat %s at %s", p.IssuedAt, fuzzNow)
	}
}

// noncanonical spells the last character of a base64url string with other padding bits,
// for a string whose length leaves some.
func noncanonical(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := []byte(s)
	b[len(b)-1] = alphabet[strings.IndexByte(alphabet, b[len(b)-1])+1]
	return string(b)
}

func unmarshalSegment(seg string, v any) error {
	b, err := b64.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// verifySignature checks a JWS signature with crypto/* directly (RFC 7518 §3).
func verifySignature(alg string, key crypto.PublicKey, input string, sig []byte) bool {
	sum := sha256.Sum256([]byte(input))
	switch k := key.(type) {
	case *rsa.PublicKey:
		return alg == "RS256" && rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil
	case *ecdsa.PublicKey:
		return alg == "ES256" && k.Curve.Params().Name == "P-256" && len(sig) == 64 &&
			ecdsa.Verify(k, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	case ed25519.PublicKey:
		return alg == "EdDSA" && ed25519.Verify(k, []byte(input), sig)
	}
	return false
}

// thumbprintOf is RFC 7638 §3 on a jwk header: its required members in lexicographic
// order, without white space, hashed with SHA-256. Each base64url member is written in
// its canonical encoding, that of the octets it decodes to: the thumbprint of the key,
// whatever spelling the client chose.
func thumbprintOf(raw json.RawMessage) (string, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", err
	}
	member := func(name string, octets bool) (string, error) {
		s, ok := m[name].(string)
		if !ok {
			return "", fmt.Errorf("no string %q", name)
		}
		if octets {
			b, err := b64.DecodeString(s)
			if err != nil {
				return "", fmt.Errorf("%q: %v", name, err)
			}
			s = b64.EncodeToString(b)
		}
		return s, nil
	}
	var names []string
	switch m["kty"] {
	case "RSA":
		names = []string{"e", "kty", "n"}
	case "EC":
		names = []string{"crv", "kty", "x", "y"}
	case "OKP":
		names = []string{"crv", "kty", "x"}
	default:
		return "", fmt.Errorf("kty %v", m["kty"])
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, name := range names {
		v, err := member(name, name != "kty" && name != "crv")
		if err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%q", name, v) // base64url, crv and kty names need no escaping
	}
	b.WriteByte('}')
	sum := sha256.Sum256([]byte(b.String()))
	return b64.EncodeToString(sum[:]), nil
}

// FuzzJWK puts arbitrary jwk headers on proofs that a test key really signs, to reach
// the key parser with every spelling of a key. Nothing panics; every error is
// ErrInvalidProof; a proof is accepted only when its jwk holds no private member and
// spells the signer's public key, and then its JKT is that key's thumbprint; and a jwk
// that spells it canonically (RFC 7518 §6) is never refused.
func FuzzJWK(f *testing.F) {
	cs := fuzzClients()
	signers := []*client{cs["ES256"], cs["EdDSA"], cs["RS256"]}
	for i, c := range signers {
		jwk, err := json.Marshal(c.jwk)
		if err != nil {
			f.Fatal(err)
		}
		s := string(jwk)
		for _, seed := range []string{
			s,
			strings.Replace(s, "{", `{"d":"AQ",`, 1),
			strings.Replace(s, "{", `{"k":"AQ",`, 1),
			strings.Replace(s, "{", `{"alg":"none","use":"enc","kid":1,`, 1),
			strings.Replace(s, "{", `{"kty":"oct",`, 1),
			strings.Replace(s, "}", `,"kty":"oct"}`, 1),
			strings.Replace(s, `"kty"`, `"KTY"`, 1),
			strings.Replace(s, `"x":"`, `"x":"AA`, 1),
			strings.Replace(s, `"n":"`, `"n":"AA`, 1),
			strings.Replace(s, `"e":"AQAB"`, `"e":"AAEAAQ"`, 1),
			strings.Replace(s, `"e":"AQAB"`, `"e":"AQ"`, 1),
			strings.Replace(s, `"crv":"P-256"`, `"crv":"P-384"`, 1),
			strings.Replace(s, `"crv":"Ed25519"`, `"crv":"X25519"`, 1),
			`{"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
			`{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}`,
			`{"kty":"RSA","n":"AQAB","e":"AQAB"}`,
			`{}`, `null`, `[]`, `"EC"`, `1e400`, "{\"kty\":\"\xff\"}",
		} {
			f.Add([]byte(seed), uint8(i))
		}
	}
	now := fuzzNow.Unix()
	claims := fmt.Sprintf(`{"jti":"j","htm":"GET","htu":"https://api.example.com/orders/1","iat":%d}`, now)
	f.Fuzz(func(t *testing.T, jwk []byte, which uint8) {
		c := signers[int(which)%len(signers)]
		// Marshal refuses a jwk that is not one JSON value, so that the header has
		// exactly the one jwk member this test reads.
		hdr, err := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": c.alg, "jwk": json.RawMessage(jwk)})
		if err != nil {
			return
		}
		input := b64.EncodeToString(hdr) + "." + b64.EncodeToString([]byte(claims))
		sig, err := jwt.GetSigningMethod(c.alg).Sign(input, c.priv)
		if err != nil {
			t.Fatal(err)
		}
		v, err := dpop.New(dpop.Config{ExternalURL: "https://api.example.com"}, dpop.Options{Now: func() time.Time { return fuzzNow }})
		if err != nil {
			t.Fatal(err)
		}
		var sent map[string]json.RawMessage
		if err := json.Unmarshal(hdr, &sent); err != nil {
			t.Fatal(err)
		}
		p, err := v.Verify(context.Background(), input+"."+b64.EncodeToString(sig), httptest.NewRequest("GET", "/orders/1", nil), "")
		if err != nil {
			if class(t, err) != dpop.ErrInvalidProof {
				t.Fatalf("a fresh store and no nonces: %v", err)
			}
			if key, perr := publicJWK(sent["jwk"], true); perr == nil && key.(interface{ Equal(crypto.PublicKey) bool }).Equal(c.priv.Public()) {
				t.Fatalf("refused the %s signer's own public key, spelled %s: %v", c.alg, sent["jwk"], err)
			}
			return
		}
		key, err := publicJWK(sent["jwk"], false)
		if err != nil {
			t.Fatalf("accepted jwk %s: %v", sent["jwk"], err)
		}
		if !key.(interface{ Equal(crypto.PublicKey) bool }).Equal(c.priv.Public()) || !key.(interface{ Equal(crypto.PublicKey) bool }).Equal(p.Key) {
			t.Fatalf("accepted jwk %s, which is not the %s signer's key", sent["jwk"], c.alg)
		}
		jkt, err := thumbprintOf(sent["jwk"])
		if err != nil || p.JKT != jkt {
			t.Fatalf("JKT %s, the jwk's thumbprint %s (%v)", p.JKT, jkt, err)
		}
	})
}

// publicJWK reads a public JWK of RFC 7518 §6 (RSA, EC) or RFC 8037 §2 (OKP Ed25519),
// with none of the private or symmetric members. strict asks for canonical base64url
// and the minimal or full-length octets RFC 7518 requires.
func publicJWK(raw json.RawMessage, strict bool) (crypto.PublicKey, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, errors.New("not a JSON object")
	}
	for _, name := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := m[name]; ok {
			return nil, fmt.Errorf("private member %q", name)
		}
	}
	str := func(name string) (string, error) {
		var s string
		if err := json.Unmarshal(m[name], &s); err != nil {
			return "", fmt.Errorf("%q is not a string", name)
		}
		return s, nil
	}
	octets := func(name string, size int) (*big.Int, error) {
		s, err := str(name)
		if err != nil {
			return nil, err
		}
		enc := b64
		if strict {
			enc = enc.Strict()
		}
		b, err := enc.DecodeString(s)
		switch {
		case err != nil || len(b) == 0:
			return nil, fmt.Errorf("%q is not base64url", name)
		case size > 0 && len(b) != size:
			return nil, fmt.Errorf("%q has %d octets, not %d", name, len(b), size)
		case strict && size == 0 && b[0] == 0:
			return nil, fmt.Errorf("%q has a leading zero", name)
		}
		return new(big.Int).SetBytes(b), nil
	}
	kty, err := str("kty")
	if err != nil {
		return nil, err
	}
	switch kty {
	case "RSA":
		n, err := octets("n", 0)
		if err != nil {
			return nil, err
		}
		e, err := octets("e", 0)
		if err != nil {
			return nil, err
		}
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, errors.New("e is too large")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		crv, err := str("crv")
		if err != nil {
			return nil, err
		}
		if crv != "P-256" {
			return nil, fmt.Errorf("crv %q", crv) // the only curve of FuzzJWK's signers
		}
		x, err := octets("x", 32)
		if err != nil {
			return nil, err
		}
		y, err := octets("y", 32)
		if err != nil {
			return nil, err
		}
		point := append(append([]byte{4}, x.FillBytes(make([]byte, 32))...), y.FillBytes(make([]byte, 32))...)
		return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	case "OKP":
		crv, err := str("crv")
		if err != nil || crv != "Ed25519" {
			return nil, fmt.Errorf("crv %q", crv)
		}
		s, err := str("x")
		if err != nil {
			return nil, err
		}
		enc := b64
		if strict {
			enc = enc.Strict()
		}
		x, err := enc.DecodeString(s)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("x is not 32 octets of base64url")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("kty %q", kty)
}
