package middleware

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tokengate/tokengate/dpop"
)

// Confirmation is an access token's cnf claim (RFC 7800 §3.1), as far as tokengate
// checks it: a token with any other confirmation method is refused (claims), since a
// binding nobody checks makes a stolen token as good as the client's own.
type Confirmation struct {
	// JKT is cnf.jkt: the RFC 7638 SHA-256 thumbprint of the key whose DPoP proof
	// must come with every request (RFC 9449 §6.1).
	JKT string
	// X5TS256 is cnf["x5t#S256"]: the base64url SHA-256 of the DER of the client
	// certificate the request must come with (RFC 8705 §3.1).
	X5TS256 string
}

// Bound reports whether the token is bound to a key or a certificate.
func (c Confirmation) Bound() bool { return c.JKT != "" || c.X5TS256 != "" }

var (
	errConfirmation = errors.New("cnf holds a confirmation method tokengate cannot check (only jkt and x5t#S256)")
	errThumbprint   = errors.New("a cnf member is not a base64url SHA-256 thumbprint")
	errJKTOff       = errors.New("the token is DPoP-bound (cnf.jkt) and DPoP is off for its issuer")

	errDPoPOff      = errors.New("the DPoP scheme is used with a token of an issuer whose DPoP is off")
	errNotDPoPBound = errors.New("the DPoP scheme is used with a token that is not DPoP-bound (no cnf.jkt)")
	errDowngrade    = errors.New("a DPoP-bound token (cnf.jkt) is sent with the Bearer scheme")
	errDPoPRequired = errors.New("the issuer's tokens must be DPoP-bound, and this one is sent as a bearer token")
	errOtherKey     = errors.New("the DPoP proof is signed with another key than the one the token is bound to (cnf.jkt)")
	errNoProof      = errors.New("the DPoP scheme is used without a DPoP header")
	errTwoProofs    = errors.New("more than one DPoP header")
	errNoCert       = errors.New("the token is certificate-bound (cnf.x5t#S256) and the request has no client certificate")
	errOtherCert    = errors.New("the client certificate is not the one the token is bound to (cnf.x5t#S256)")
	errCertHeader   = errors.New("the client certificate header is not one element with one Hash (hex SHA-256)")
	errNoJTI        = errors.New("a single-use route needs a token with a jti")
	errUsed         = errors.New("the single-use token was used before")
	errStore        = errors.New("the replay store did not answer")
)

// parseConfirmation reads cnf: an object of jkt and x5t#S256, each once, each a
// thumbprint; jkt only for an issuer with DPoP on.
func parseConfirmation(raw []byte, mode DPoPMode) (Confirmation, error) {
	var c Confirmation
	var scratch [4]member
	members, ok := scanObject(scratch[:0], raw, len(scratch))
	if !ok || len(members) == 0 || !uniqueNames(members) {
		return c, errConfirmation
	}
	for _, m := range members {
		v, ok := unquote(m.value)
		switch {
		case m.name != "jkt" && m.name != "x5t#S256":
			return Confirmation{}, errConfirmation
		case !ok || !isThumbprint(v):
			return Confirmation{}, errThumbprint
		case m.name == "x5t#S256":
			c.X5TS256 = v
		case mode == DPoPOff:
			return Confirmation{}, errJKTOff
		default:
			c.JKT = v
		}
	}
	return c, nil
}

// isThumbprint reports whether s is a base64url SHA-256 without padding: 43 characters,
// the last of which carries 2 bits (so one of AEIMQUYcgkosw048).
func isThumbprint(s string) bool {
	if len(s) != 43 {
		return false
	}
	var sum [32]byte
	n, err := base64.RawURLEncoding.Strict().Decode(sum[:], []byte(s))
	return err == nil && n == 32
}

// bind checks that the request proves what its verified token is bound to (docs/
// sender-constrained.md): a DPoP proof by the key of cnf.jkt, the client certificate
// of cnf.x5t#S256; and that the token's issuer accepts the scheme it came with. The
// proof is checked on every request, a cached token's too.
func (g *Gate) bind(r *http.Request, token string, dpopScheme bool, cl *Claims) *Error {
	mode := DPoPOff
	if cl.policy != nil {
		mode = cl.policy.dpop
	}
	cnf := cl.Confirmation
	switch {
	case dpopScheme && mode == DPoPOff:
		return deny(ReasonBinding, errDPoPOff)
	case dpopScheme && cnf.JKT == "":
		return deny(ReasonBinding, errNotDPoPBound)
	case dpopScheme:
		proof, e := g.checkProof(r, token)
		if e != nil {
			return e
		}
		if subtle.ConstantTimeCompare([]byte(proof.JKT), []byte(cnf.JKT)) != 1 {
			return deny(ReasonBinding, errOtherKey)
		}
	case cnf.JKT != "":
		return deny(ReasonBinding, errDowngrade)
	case mode == DPoPRequired:
		return deny(ReasonBinding, errDPoPRequired)
	}
	if cnf.X5TS256 != "" {
		got, err := g.certificateThumbprint(r)
		if err != nil {
			return deny(ReasonBinding, err)
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(cnf.X5TS256)) != 1 {
			return deny(ReasonBinding, errOtherCert)
		}
	}
	return nil
}

// checkProof verifies the request's one DPoP proof for token.
func (g *Gate) checkProof(r *http.Request, token string) (*dpop.Proof, *Error) {
	vals := r.Header["Dpop"]
	switch {
	case len(vals) == 0:
		return nil, proofDenial(ReasonDPoPProof, errNoProof)
	case len(vals) > 1:
		return nil, proofDenial(ReasonDPoPProof, errTwoProofs)
	}
	proof, err := g.dpop.Verify(r.Context(), vals[0], r, token)
	switch {
	case err == nil:
		return proof, nil
	case errors.Is(err, dpop.ErrUseNonce):
		return nil, proofDenial(ReasonDPoPNonce, err)
	case errors.Is(err, dpop.ErrReplay):
		return nil, proofDenial(ReasonReplay, err)
	case errors.Is(err, dpop.ErrStoreUnavailable):
		return nil, proofDenial(ReasonReplayStoreUnavailable, err)
	}
	return nil, proofDenial(ReasonDPoPProof, err)
}

func proofDenial(reason Reason, err error) *Error {
	e := deny(reason, err)
	e.proof = true
	return e
}

// certificateThumbprint is the base64url SHA-256 of the request's client certificate:
// from the TLS connection, or from the header a trusted front proxy sets.
func (g *Gate) certificateThumbprint(r *http.Request) (string, error) {
	if name := g.cfg.Tokens.ClientCertificateHeader; name != "" {
		return forwardedCertHash(r.Header.Values(name))
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", errNoCert
	}
	sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// forwardedCertHash reads the Hash of an X-Forwarded-Client-Cert header (Envoy's form:
// elements separated by commas, each key=value pairs separated by semicolons, values
// optionally quoted). The front proxy appends its own element last, so the last
// element is the one it vouches for; any earlier ones came from further away. One
// header field only: two are ambiguous.
func forwardedCertHash(vals []string) (string, error) {
	switch len(vals) {
	case 0:
		return "", errNoCert
	case 1:
	default:
		return "", errCertHeader
	}
	elems := splitQuoted(vals[0], ',')
	hash := ""
	for _, pair := range splitQuoted(elems[len(elems)-1], ';') {
		k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
		if !strings.EqualFold(k, "Hash") {
			continue
		}
		if hash != "" {
			return "", errCertHeader
		}
		hash = strings.Trim(v, `"`)
	}
	sum, err := hex.DecodeString(hash)
	if err != nil || len(sum) != sha256.Size {
		return "", errCertHeader
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// splitQuoted splits s at sep outside double quotes (a backslash escapes inside them).
func splitQuoted(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// useOnce records a single-use token's use: its jti, keyed by issuer, until the token
// expires (with the leeway a token is accepted for past exp).
func (g *Gate) useOnce(ctx context.Context, cl *Claims) *Error {
	if cl.ID == "" {
		return deny(ReasonClaims, errNoJTI)
	}
	first, err := g.replay.Use(ctx, singleUseKey(cl.Issuer, cl.ID), cl.ExpiresAt.Add(g.cfg.Tokens.Leeway))
	switch {
	case err != nil:
		return deny(ReasonReplayStoreUnavailable, fmt.Errorf("%w: %w", errStore, err))
	case !first:
		return deny(ReasonReplay, errUsed)
	}
	return nil
}

// singleUseKey is the replay-store key of a token: a hash of its issuer and jti, so
// that keys are of one size whatever the jti, and two issuers' jtis never meet.
func singleUseKey(issuer, jti string) string {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(issuer)))
	h.Write(n[:])
	h.Write([]byte(issuer))
	h.Write([]byte(jti))
	return "at|" + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
