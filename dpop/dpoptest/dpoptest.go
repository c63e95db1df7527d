package dpoptest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// Absent, as a value in Claims or Header, leaves the member out.
var Absent = jwkstest.Absent

// Client is a DPoP client: a key pair of one algorithm.
type Client struct {
	Key *jwkstest.Key
	jwk map[string]any
	jkt string
}

// NewClient makes a client with a new key for alg (ES256, RS256, EdDSA...).
func NewClient(alg string) (*Client, error) {
	k, err := jwkstest.GenerateKey("", alg)
	if err != nil {
		return nil, err
	}
	return ClientOf(k)
}

// ClientOf is the client of a key pair that exists already (one kept in a file).
func ClientOf(k *jwkstest.Key) (*Client, error) {
	var jwk map[string]any
	if err := json.Unmarshal(k.JWKWith(map[string]any{"kid": nil, "use": nil}), &jwk); err != nil {
		return nil, fmt.Errorf("dpoptest: the key's JWK: %w", err)
	}
	jkt, err := Thumbprint(jwk)
	if err != nil {
		return nil, err
	}
	return &Client{Key: k, jwk: jwk, jkt: jkt}, nil
}

// MustNewClient is NewClient that panics, for tests.
func MustNewClient(alg string) *Client {
	c, err := NewClient(alg)
	if err != nil {
		panic(err)
	}
	return c
}

// JKT is the RFC 7638 SHA-256 thumbprint of the client's public key, base64url: the
// cnf.jkt of a token bound to it.
func (c *Client) JKT() string { return c.jkt }

// JWK is the public key as the proof's jwk header carries it. The map is the caller's.
func (c *Client) JWK() map[string]any {
	out := make(map[string]any, len(c.jwk))
	for k, v := range c.jwk {
		out[k] = v
	}
	return out
}

// Members of a proof's claims or header: a value of Absent leaves the member out.
type (
	Claims = map[string]any
	Header = map[string]any
)

// Proof signs a proof for method and uri (htm, htu), bound to accessToken (ath) unless
// it is empty, issued now with a random jti; claims and header are laid over that
// (typ dpop+jwt, the client's alg and jwk). Absent leaves a member out.
func (c *Client) Proof(method, uri, accessToken string, claims Claims, header Header) (string, error) {
	cl := Claims{"jti": rand.Text(), "htm": method, "htu": uri, "iat": time.Now().Unix()}
	if accessToken != "" {
		cl["ath"] = Hash(accessToken)
	}
	for k, v := range claims {
		cl[k] = v
	}
	h := Header{"typ": "dpop+jwt", "alg": c.Key.Alg, "jwk": c.jwk}
	for k, v := range header {
		h[k] = v
	}
	// Signed with the client's own alg whatever the header says: a proof whose header
	// names none or HS256 must be refused for that, not for a missing signature.
	return jwkstest.SignJSON(c.Key, c.Key.Alg, h, cl)
}

// MustProof is Proof that panics, for tests.
func (c *Client) MustProof(method, uri, accessToken string, claims Claims, header Header) string {
	p, err := c.Proof(method, uri, accessToken, claims, header)
	if err != nil {
		panic(err)
	}
	return p
}

// Hash is the base64url SHA-256 of s: a proof's ath for an access token s.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return jwkstest.Encode(sum[:])
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of a public JWK: its required members
// (EC crv kty x y; RSA e kty n; OKP crv kty x) in lexicographic order, no spaces.
func Thumbprint(jwk map[string]any) (string, error) {
	var names []string
	switch jwk["kty"] {
	case "EC":
		names = []string{"crv", "kty", "x", "y"}
	case "RSA":
		names = []string{"e", "kty", "n"}
	case "OKP":
		names = []string{"crv", "kty", "x"}
	default:
		return "", fmt.Errorf("dpoptest: no thumbprint for kty %v", jwk["kty"])
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		s, ok := jwk[n].(string)
		if !ok {
			return "", fmt.Errorf("dpoptest: the JWK has no %s", n)
		}
		m[n] = s
	}
	// encoding/json writes map keys sorted, and these values need no escaping.
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return jwkstest.Encode(sum[:]), nil
}
