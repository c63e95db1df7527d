package jwkstest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"time"
)

// Claims are the members of a token's payload (or header). A value of Absent removes
// a member that the defaults would set.
type Claims map[string]any

// Absent, as a value in Claims or in a MintOption header, leaves the member out.
var Absent = absent{}

type absent struct{}

// MintOption changes how Mint signs a token.
type MintOption func(*mint)

type mint struct {
	key    *Key
	alg    string
	header map[string]any
}

// WithKey signs with the key of this kid instead of the current signing key. The key
// must be known to the server (published or not).
func WithKey(kid string) MintOption { return func(m *mint) { m.key = &Key{KID: kid} } }

// WithSigner signs with a key the server does not know (an attacker's).
func WithSigner(k *Key) MintOption { return func(m *mint) { m.key = k } }

// WithAlg puts alg in the header and signs with it, whatever the key's own alg.
func WithAlg(alg string) MintOption { return func(m *mint) { m.alg = alg } }

// WithHeader sets header members (kid, typ, crit...), or removes them with Absent.
func WithHeader(h Claims) MintOption {
	return func(m *mint) { maps.Copy(m.header, h) }
}

// DefaultClaims returns the claims Mint starts from: an RFC 9068 access token of this
// server for its default audience, issued now, valid for five minutes, with a random
// jti, subject "user-1" and client "client-1", without scope.
func (s *Server) DefaultClaims() Claims {
	now := s.now()
	return Claims{
		"iss":       s.Issuer,
		"aud":       s.Audience(),
		"sub":       "user-1",
		"client_id": "client-1",
		"iat":       now.Unix(),
		"exp":       now.Add(5 * time.Minute).Unix(),
		"jti":       randomID(),
	}
}

// Mint returns a signed token: the default claims with claims laid over them, a header
// {"alg", "typ": "at+jwt", "kid"} of the signing key, changed by opts.
func (s *Server) Mint(claims Claims, opts ...MintOption) (string, error) {
	all := s.DefaultClaims()
	maps.Copy(all, claims)
	m := mint{header: map[string]any{}}
	for _, o := range opts {
		o(&m)
	}
	key, err := s.resolveKey(m.key)
	if err != nil {
		return "", err
	}
	alg := m.alg
	if alg == "" {
		alg = key.Alg
	}
	header := map[string]any{"alg": alg, "typ": "at+jwt", "kid": key.KID}
	maps.Copy(header, m.header)
	return SignJSON(key, alg, header, all)
}

// MustMint is Mint that panics, for tests.
func (s *Server) MustMint(claims Claims, opts ...MintOption) string {
	t, err := s.Mint(claims, opts...)
	if err != nil {
		panic(err)
	}
	return t
}

// SignJSON marshals header and payload (members set to Absent left out) and signs them
// with key under alg.
func SignJSON(key *Key, alg string, header, payload map[string]any) (string, error) {
	h, err := json.Marshal(dropAbsent(header))
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(dropAbsent(payload))
	if err != nil {
		return "", err
	}
	return SignRaw(key, alg, h, p)
}

// SignRaw signs the exact bytes of a header and a payload, which need not be valid
// JSON: it is how tests build duplicate members, odd encodings and other hostile
// tokens that a JSON encoder would never write.
func SignRaw(key *Key, alg string, header, payload []byte) (string, error) {
	input := Encode(header) + "." + Encode(payload)
	sig, err := key.Sign(alg, []byte(input))
	if err != nil {
		return "", fmt.Errorf("jwkstest: signing with %q as %s: %w", key.KID, alg, err)
	}
	return input + "." + Encode(sig), nil
}

// Encode is base64url without padding, the JWS segment encoding.
func Encode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func dropAbsent(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if _, gone := v.(absent); !gone {
			out[k] = v
		}
	}
	return out
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
