package jwks

import (
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/MicahParks/jwkset"

	"github.com/tokengate/tokengate/internal/clip"
	"github.com/tokengate/tokengate/internal/smallorder"
)

// Why a key of a fetched document was left out of the set. These are the values of the
// reason label of tokengate_jwks_skipped_keys.
const (
	skipInvalid      = "invalid"       // not a JWK, bad base64, off-curve point, bad exponent...
	skipUnsupported  = "unsupported"   // a key type or curve no JWS algorithm here uses (Ed448, X25519, secp256k1...)
	skipSymmetric    = "symmetric"     // kty "oct": a shared secret has no place in a published set
	skipPrivate      = "private"       // private key material published: the key is compromised
	skipEncryption   = "encryption"    // use "enc"
	skipKeyOps       = "key_ops"       // key_ops present without "verify"
	skipWeakRSA      = "weak_rsa"      // RSA modulus under MinRSABits (or over MaxRSABits)
	skipAlgMismatch  = "alg_mismatch"  // the key's alg does not fit its type or curve
	skipNotAllowed   = "not_allowed"   // the key fits no algorithm of the issuer's allowlist
	skipKIDInvalid   = "kid_invalid"   // a kid that no token could name (too long, control characters)
	skipDuplicateKID = "duplicate_kid" // a kid already taken by an earlier key of the document
)

var skipReasons = []string{skipInvalid, skipUnsupported, skipSymmetric, skipPrivate, skipEncryption, skipKeyOps, skipWeakRSA, skipAlgMismatch, skipNotAllowed, skipKIDInvalid, skipDuplicateKID}

// skipped is one key left out of a document, for the log.
type skipped struct {
	index  int
	kid    string
	reason string
	detail string
}

// parsedSet is the outcome of parsing one JWKS document.
type parsedSet struct {
	keys    []jwkset.JWK
	skipped []skipped
}

// parseJWKS parses a JWKS document key by key (RFC 7517 §5: a key that cannot be used
// is ignored, it does not void the set) and keeps only keys that can verify a token of
// this issuer. The document as a whole is refused when it is not a JSON object with a
// "keys" array, when it holds more than maxKeys keys, or when no key is usable: the
// caller then keeps its last good set.
func parseJWKS(doc []byte, allowed algSet, maxKeys int) (parsedSet, error) {
	var top struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &top); err != nil {
		return parsedSet{}, fmt.Errorf("%w: not a JWKS document: %v", ErrFetch, err)
	}
	if top.Keys == nil {
		return parsedSet{}, fmt.Errorf(`%w: not a JWKS document: no "keys" array`, ErrFetch)
	}
	raws := *top.Keys
	if len(raws) > maxKeys {
		return parsedSet{}, fmt.Errorf("%w: the document holds %d keys, more than the cap of %d", ErrFetch, len(raws), maxKeys)
	}

	var out parsedSet
	seen := make(map[string]bool, len(raws))
	for i, raw := range raws {
		jwk, kid, reason, detail := parseKey(raw, allowed)
		if reason == "" && kid != "" {
			if seen[kid] {
				reason, detail = skipDuplicateKID, "an earlier key of the document has this kid"
			}
			seen[kid] = true
		}
		if reason != "" {
			out.skipped = append(out.skipped, skipped{index: i, kid: kid, reason: reason, detail: detail})
			continue
		}
		out.keys = append(out.keys, jwk)
	}
	if len(out.keys) == 0 {
		return out, fmt.Errorf("%w: the document holds no usable signing key (%d skipped)", ErrFetch, len(out.skipped))
	}
	return out, nil
}

// parseKey parses one JWK and says why it cannot be used, if it cannot. The kid comes
// back even for a refused key, for the log line.
func parseKey(raw json.RawMessage, allowed algSet) (jwk jwkset.JWK, kid, reason, detail string) {
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		return jwk, "", skipInvalid, "not a JSON object of JWK members"
	}
	named := func(reason, detail string) (jwkset.JWK, string, string, string) {
		return jwkset.JWK{}, m.KID, reason, detail
	}

	if !validKID(m.KID) && m.KID != "" {
		return named(skipKIDInvalid, fmt.Sprintf("kid longer than %d bytes or with control characters", MaxKIDLength))
	}
	if m.KTY == jwkset.KtyOct {
		return named(skipSymmetric, `kty "oct" is a shared secret`)
	}
	if m.D != "" || m.P != "" || m.Q != "" || m.DP != "" || m.DQ != "" || m.QI != "" || len(m.OTH) > 0 || m.K != "" {
		return named(skipPrivate, "the key set publishes private key material: this key must be treated as compromised")
	}
	switch m.USE {
	case "", jwkset.UseSig:
	case jwkset.UseEnc:
		return named(skipEncryption, `use "enc": an encryption key never verifies a signature`)
	default:
		return named(skipInvalid, fmt.Sprintf("use %q is not a registered value", clip.String(string(m.USE), 32)))
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return named(skipKeyOps, "key_ops does not contain verify")
	}

	jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	switch {
	case errors.Is(err, jwkset.ErrUnsupportedKey):
		return named(skipUnsupported, fmt.Sprintf("kty %q crv %q is not a signing key type supported here", m.KTY, m.CRV))
	case err != nil:
		return named(skipInvalid, err.Error())
	}

	fits := keyAlgs(jwk.Key())
	if fits == 0 {
		return named(skipUnsupported, fmt.Sprintf("kty %q crv %q verifies no JWS algorithm", m.KTY, m.CRV))
	}
	if pub, ok := jwk.Key().(*rsa.PublicKey); ok {
		if bits := pub.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
			return named(skipWeakRSA, fmt.Sprintf("RSA modulus of %d bits, outside %d to %d", bits, MinRSABits, MaxRSABits))
		}
		if pub.E < 3 || pub.E%2 == 0 || len(m.E) > 6 {
			return named(skipInvalid, "RSA exponent out of range")
		}
	}
	if pub, ok := jwk.Key().(ed25519.PublicKey); ok && smallorder.Ed25519(pub) {
		return named(skipInvalid, "an Ed25519 key of small order, for which anyone can make a signature")
	}
	if m.ALG != "" {
		own := algBit(string(m.ALG))
		if own == 0 || !fits.has(own) {
			return named(skipAlgMismatch, fmt.Sprintf("alg %q does not fit kty %q crv %q", m.ALG, m.KTY, m.CRV))
		}
		fits = own
	}
	if fits&allowed == 0 {
		return named(skipNotAllowed, fmt.Sprintf("the key verifies only %s, none of which the issuer allows", fits))
	}
	return jwk, m.KID, "", ""
}

// validKID reports whether a kid is one that a token may name and a set may index:
// 1 to MaxKIDLength bytes, no ASCII control characters.
func validKID(kid string) bool {
	if kid == "" || len(kid) > MaxKIDLength {
		return false
	}
	for i := 0; i < len(kid); i++ {
		if c := kid[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
