package dpop

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/replay"
)

// Defaults of a zero Config field.
const (
	DefaultMaxAge      = 60 * time.Second
	DefaultLeeway      = 5 * time.Second
	DefaultNoncePeriod = 5 * time.Minute
	// MaxProofBytes bounds a proof before anything of it is decoded.
	MaxProofBytes = 8 << 10
	// maxJTIBytes bounds the jti that becomes a key in the replay store.
	maxJTIBytes = 256
)

// Config says how proofs are checked.
type Config struct {
	// ExternalURL is how clients address this API: the scheme, the authority and any
	// path prefix in front of the request's path (an ingress that strips /api). The htu
	// of a proof is compared with it, never with a Host or X-Forwarded-* header.
	ExternalURL string
	// Algorithms the proofs may use; empty is jwks.DefaultAlgorithms(). HMAC and
	// "none" are refused.
	Algorithms []string
	// MaxAge is how far in the past a proof's iat may be [60s]; Leeway how far in the
	// future, for clock skew [5s; negative: none].
	MaxAge, Leeway time.Duration
	// NonceSecret turns server nonces on: every proof must carry a nonce this server
	// (or a replica with the same secret, at least 32 bytes) issued within
	// NoncePeriod [5m] to two periods ago.
	NonceSecret []byte
	NoncePeriod time.Duration
}

// Options are a Verifier's collaborators.
type Options struct {
	// Replay records proof jtis; nil is an in-memory store (one replica only).
	Replay replay.Store
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// ConfigError names a Config field that is wrong.
type ConfigError struct{ Field, Problem string }

func (e *ConfigError) Error() string { return "dpop: " + e.Field + ": " + e.Problem }

// Proof is a verified proof.
type Proof struct {
	// JKT is the RFC 7638 thumbprint of the proof's key: a DPoP-bound token's cnf.jkt
	// must equal it.
	JKT      string
	JTI      string
	IssuedAt time.Time
	Key      crypto.PublicKey
}

// Verifier checks proofs. It is safe for concurrent use.
type Verifier struct {
	base           string // the external URL without a trailing slash
	algs           []string
	maxAge, leeway time.Duration
	nonces         *nonces
	replay         replay.Store
	now            func() time.Time
	headers        headerCache
}

// New checks cfg and returns a Verifier.
func New(cfg Config, opts Options) (*Verifier, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	v := &Verifier{algs: cfg.Algorithms, maxAge: cfg.MaxAge, leeway: cfg.Leeway, replay: opts.Replay, now: opts.Now}
	u, err := url.Parse(cfg.ExternalURL)
	switch {
	case cfg.ExternalURL == "":
		bad("ExternalURL", "is required: the htu of a proof is checked against it")
	case err != nil:
		bad("ExternalURL", "is not a URL: %v", err)
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(cfg.ExternalURL, "?") || strings.HasSuffix(cfg.ExternalURL, "#"):
		bad("ExternalURL", "must not have a query or fragment")
	default:
		if _, err := normalizeURI(cfg.ExternalURL); err != nil {
			bad("ExternalURL", "%q: %v", cfg.ExternalURL, err)
		}
		v.base = strings.TrimSuffix(cfg.ExternalURL, "/")
	}
	if v.algs == nil {
		v.algs = jwks.DefaultAlgorithms()
	}
	if len(v.algs) == 0 {
		bad("Algorithms", "is empty; leave it out for the default")
	}
	supported := jwks.DefaultAlgorithms()
	for _, a := range v.algs {
		if !slices.Contains(supported, a) {
			bad("Algorithms", "%q is not an asymmetric algorithm tokengate verifies (%s)", a, strings.Join(supported, " "))
		}
	}
	v.algs = slices.Clone(v.algs)
	if v.maxAge == 0 {
		v.maxAge = DefaultMaxAge
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0 // none, as tokens.leeway: 0s says
	}
	if v.maxAge < 0 {
		bad("MaxAge", "must be positive, got %s", v.maxAge)
	}
	if cfg.NonceSecret != nil {
		if len(cfg.NonceSecret) < 32 {
			bad("NonceSecret", "has %d bytes; use at least 32 random bytes", len(cfg.NonceSecret))
		}
		period := cmp.Or(cfg.NoncePeriod, DefaultNoncePeriod)
		if period < time.Second {
			bad("NoncePeriod", "%s is shorter than a second", period)
		}
		v.nonces = &nonces{secret: slices.Clone(cfg.NonceSecret), period: period}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.replay == nil {
		v.replay = replay.NewMemory(0, v.now)
	}
	return v, nil
}

// Algorithms are the algorithms proofs may use, for the algs of a DPoP challenge.
func (v *Verifier) Algorithms() []string { return slices.Clone(v.algs) }

// Nonce returns a fresh server nonce for a DPoP-Nonce header, or "" when nonces are
// off.
func (v *Verifier) Nonce() string {
	if v.nonces == nil {
		return ""
	}
	return v.nonces.issue(v.now())
}

// proofHeader is what a proof's header says, once checked: the key and its thumbprint.
type proofHeader struct {
	alg string
	key crypto.PublicKey
	jkt string
}

type proofClaims struct {
	JTI   *string
	HTM   *string
	HTU   *string
	IAT   *json.Number
	ATH   *string
	Nonce *string
}

// Verify checks the proof sent with r (the value of its one DPoP header) and, when
// accessToken is not empty, that the proof is for that token (ath). On success the
// proof's jti is recorded, so the same proof fails the next time.
func (v *Verifier) Verify(ctx context.Context, proof string, r *http.Request, accessToken string) (*Proof, error) {
	now := v.now()
	if proof == "" {
		return nil, invalid("no proof")
	}
	if len(proof) > MaxProofBytes {
		return nil, invalid("the proof has %d bytes, more than %d", len(proof), MaxProofBytes)
	}
	h, rest, ok1 := strings.Cut(proof, ".")
	payload, sigSeg, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sigSeg, ".") {
		return nil, invalid("the proof is not a compact JWS")
	}
	hdr, cached, err := v.header(h)
	if err != nil {
		return nil, err
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigSeg)
	if err != nil {
		return nil, invalid("the signature is not base64url")
	}
	if err := jwt.GetSigningMethod(hdr.alg).Verify(proof[:len(h)+1+len(payload)], sig, hdr.key); err != nil {
		return nil, invalid("the signature does not verify with the proof's jwk")
	}
	var c proofClaims
	if err := decodeSegment(payload, map[string]any{
		"jti": &c.JTI, "htm": &c.HTM, "htu": &c.HTU, "iat": &c.IAT, "ath": &c.ATH, "nonce": &c.Nonce,
	}); err != nil {
		return nil, invalid("the proof's claims: %v", err)
	}
	switch {
	case c.JTI == nil || *c.JTI == "":
		return nil, invalid("no jti")
	case len(*c.JTI) > maxJTIBytes:
		return nil, invalid("the jti has more than %d bytes", maxJTIBytes)
	case c.HTM == nil || c.HTU == nil || c.IAT == nil:
		return nil, invalid("htm, htu and iat are required")
	}
	if *c.HTM != r.Method {
		return nil, invalid("htm %q is not the request's method %s", *c.HTM, r.Method)
	}
	if err := v.checkHTU(*c.HTU, r); err != nil {
		return nil, err
	}
	iat, err := numericDate(*c.IAT)
	if err != nil {
		return nil, invalid("iat: %v", err)
	}
	if v.nonces != nil && (c.Nonce == nil || !v.nonces.valid(*c.Nonce, now)) {
		return nil, &Error{class: ErrUseNonce, Err: errors.New("the proof has no nonce, or a stale one")}
	}
	if age := now.Sub(iat); age > v.maxAge || -age > v.leeway {
		return nil, invalid("iat %s is outside the window (%s in the past, %s in the future)", iat.UTC().Format(time.RFC3339), v.maxAge, v.leeway)
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		var want [43]byte
		base64.RawURLEncoding.Encode(want[:], sum[:])
		if c.ATH == nil || subtle.ConstantTimeCompare([]byte(*c.ATH), want[:]) != 1 {
			return nil, invalid("ath is not the hash of the access token")
		}
	}
	// Keyed by the proof's key as well: nobody without that key can use up its jtis.
	first, err := v.replay.Use(ctx, "dpop|"+hdr.jkt+"|"+*c.JTI, iat.Add(v.maxAge+time.Second))
	if err != nil {
		return nil, &Error{class: ErrStoreUnavailable, Err: err}
	}
	if !first {
		return nil, &Error{class: ErrReplay, Err: errors.New("this jti was used before")}
	}
	if !cached {
		v.headers.put(strings.Clone(h), hdr)
	}
	return &Proof{JKT: hdr.jkt, JTI: *c.JTI, IssuedAt: iat, Key: hdr.key}, nil
}

// header checks a proof's header segment and reads its key: from the cache of headers
// of proofs that verified (a client sends the same header with every proof), or by
// decoding it. cached says which.
func (v *Verifier) header(seg string) (hdr *proofHeader, cached bool, err error) {
	if hdr := v.headers.get(seg); hdr != nil {
		return hdr, true, nil
	}
	var (
		typ, alg string
		jwk      json.RawMessage
		crit     json.RawMessage
	)
	if err := decodeSegment(seg, map[string]any{"typ": &typ, "alg": &alg, "jwk": &jwk, "crit": &crit}); err != nil {
		return nil, false, invalid("the proof's header: %v", err)
	}
	// A media type: compared without case, "application/" optional (RFC 7515 §4.1.9).
	if t := strings.ToLower(typ); t != "dpop+jwt" && t != "application/dpop+jwt" {
		return nil, false, invalid("typ %q is not dpop+jwt", typ)
	}
	if !slices.Contains(v.algs, alg) {
		return nil, false, invalid("alg %q is not allowed (allowed: %s)", alg, strings.Join(v.algs, " "))
	}
	if crit != nil {
		return nil, false, invalid("the proof names critical header parameters")
	}
	if jwk == nil {
		return nil, false, invalid("the proof has no jwk header")
	}
	key, err := publicKey(jwk, alg)
	if err != nil {
		return nil, false, invalid("%v", err)
	}
	jkt, err := jwks.Thumbprint(key)
	if err != nil {
		return nil, false, invalid("%v", err)
	}
	return &proofHeader{alg: alg, key: key, jkt: jkt}, false, nil
}

// checkHTU compares the proof's htu with the URI the client addressed: the external URL
// and the request's path, both normalized, without query or fragment (RFC 9449 §4.3).
func (v *Verifier) checkHTU(htu string, r *http.Request) error {
	// The same string normalizes the same: most clients send exactly this.
	if path := r.URL.EscapedPath(); len(htu) == len(v.base)+len(path) && strings.HasPrefix(htu, v.base) && strings.HasSuffix(htu, path) {
		return nil
	}
	got, err := normalizeURI(htu)
	if err != nil {
		return invalid("htu %q: %v", htu, err)
	}
	want, err := normalizeURI(v.base + r.URL.EscapedPath())
	if err != nil {
		return invalid("the request's URI: %v", err)
	}
	if got != want {
		return invalid("htu %q is not the request's URI %s", htu, want)
	}
	return nil
}

// decodeSegment decodes a base64url JSON object into fields, by exact member name
// (RFC 7515 §5.3: names are compared without any case folding, which encoding/json's
// struct decoding would do); other members are skipped, a member twice is an error.
func decodeSegment(seg string, fields map[string]any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("not base64url")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := make(map[string]bool, len(fields))
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return errors.New("not a JSON object")
		}
		name, _ := t.(string)
		if seen[name] {
			return fmt.Errorf("member %q appears twice", name)
		}
		seen[name] = true
		dst, ok := fields[name]
		if !ok {
			var skip json.RawMessage
			dst = &skip
		}
		if err := d.Decode(dst); err != nil {
			return fmt.Errorf("member %q is not of the expected type", name)
		}
	}
	if _, err := d.Token(); err != nil {
		return errors.New("not a JSON object")
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func numericDate(n json.Number) (time.Time, error) {
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || f < 0 || f > 1<<40 {
		return time.Time{}, errors.New("not a NumericDate")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}
