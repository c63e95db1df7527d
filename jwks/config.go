package jwks

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/schemerule"
)

// Defaults of Config and Refresh. A zero field means its default.
const (
	DefaultRefreshMin       = time.Minute
	DefaultRefreshMax       = time.Hour
	DefaultUnknownKIDEvery  = 30 * time.Second
	DefaultUnknownKIDWait   = 2 * time.Second
	DefaultHTTPTimeout      = 10 * time.Second
	DefaultMaxResponseBytes = 1 << 20
	DefaultMaxKeys          = 100

	// MinRSABits is the smallest RSA modulus a key may have (RFC 7518 §3.3 and §3.5).
	// It is not configurable: a smaller key is forgeable, not a matter of taste.
	MinRSABits = 2048
	// MaxRSABits bounds the work one signature check can cost.
	MaxRSABits = 8192
	// MaxKIDLength bounds a token's kid (RFC 8725 §3.10: a kid is untrusted input).
	MaxKIDLength = 256
)

// Config is one trusted authorization server. The zero value of every field but Issuer
// means its default; New validates it and refuses, naming the field, any value that
// would weaken a check.
type Config struct {
	// Issuer is the exact iss value of the server's tokens and, unless JWKSURI or
	// JWKSFile is set, the base of discovery: {Issuer}/.well-known/openid-configuration,
	// then the RFC 8414 location. The discovered document's issuer must equal it byte
	// for byte. It must be https, unless its host is a loopback address or
	// InsecureHTTP is set.
	Issuer string

	// JWKSURI skips discovery and fetches keys from this URL. Same scheme rules as
	// Issuer.
	JWKSURI string

	// JWKSFile reads keys from a local file instead (air-gapped clusters), and re-reads
	// it when it changes. Exclusive with JWKSURI.
	JWKSFile string

	// JWKS is the key set document itself, for an issuer whose keys cannot be fetched
	// and are not worth a file (a cluster out of reach, whose keys change seldom). New
	// parses it and refuses a document without a usable key. It never changes: other
	// keys are another Config. Exclusive with JWKSURI and JWKSFile.
	JWKS string

	// IssuerCheckURL, with JWKSURI, is a discovery document that should name Issuer.
	// Keys fetched from JWKSURI do not go through discovery, so nothing else would
	// notice an Issuer that is not the iss the server writes, and every token would be
	// refused (reason issuer) with no word of why. The document is fetched once, after
	// the first fetch of keys, with the same client (CAFile, BearerTokenFile); one that
	// names another issuer is logged as an error that says both, one that cannot be
	// read as a warning. It never keeps the keys from loading. Same scheme rules as
	// Issuer.
	IssuerCheckURL string

	// Algorithms is the allowlist of JWS algorithms for this issuer's tokens. It
	// defaults to defaultAlgorithms. HMAC ("HS256"...) and "none" are refused: a
	// published key set can never hold a secret.
	Algorithms []string

	// Refresh says how often keys are fetched.
	Refresh Refresh

	// CAFile is a PEM bundle trusted in addition to the system roots, for an issuer
	// behind a private CA.
	CAFile string

	// InsecureHTTP allows plain http to a host that is not loopback. New logs a warning
	// every time it is used. Never for production.
	InsecureHTTP bool

	// BearerTokenFile authenticates the fetches of discovery and of the key set with
	// the token this file holds (Authorization: Bearer), for an issuer whose metadata
	// is not public: a Kubernetes API server, whose /openid/v1/jwks wants the pod's
	// projected ServiceAccount token (/var/run/secrets/kubernetes.io/serviceaccount/token).
	// The file is read again at every fetch, so a token that the kubelet rotates is
	// used as soon as it is written, and a file that cannot be read, or that holds no
	// token, fails the fetch (the last good keys stay in use). The token goes only to
	// the origins of JWKSURI and IssuerCheckURL, or of Issuer when there is no JWKSURI
	// and discovery runs there (scheme, host and port), over
	// https or plain http to a loopback host: never to a jwks_uri that discovery names
	// elsewhere, nor to another origin across a redirect, nor into a log line or an
	// error. New checks that the file holds a token. Exclusive with JWKSFile, JWKS and
	// InsecureHTTP.
	BearerTokenFile string

	// HTTPTimeout bounds each HTTP request (discovery or JWKS), from dial to the last
	// byte of the body. It defaults to DefaultHTTPTimeout.
	HTTPTimeout time.Duration

	// MaxResponseBytes caps a discovery or JWKS response body; a larger one is refused.
	// It defaults to DefaultMaxResponseBytes (1 MiB).
	MaxResponseBytes int64

	// MaxKeys caps the number of keys in a JWKS document; a document with more is
	// refused as a whole. It defaults to DefaultMaxKeys.
	MaxKeys int
}

// Refresh is the fetch schedule of one issuer's keys.
type Refresh struct {
	// Min and Max bound the interval between scheduled fetches. The interval is the
	// response's Cache-Control max-age clamped to [Min, Max] (Max when the response has
	// none), less up to 10% of jitter so that many sidecars do not fetch in step. After
	// a failed fetch the retry backs off from one second up to Min. Defaults:
	// DefaultRefreshMin and DefaultRefreshMax.
	Min, Max time.Duration

	// UnknownKIDEvery is the least time between two fetches triggered by a token whose
	// kid is not in the set (the rate limit that protects the authorization server
	// from a flood of random kids). It also bounds how long such a kid is remembered
	// as unknown. Default: DefaultUnknownKIDEvery.
	UnknownKIDEvery time.Duration

	// UnknownKIDWait is the longest a request waits for such a fetch, whatever its own
	// deadline. Default: DefaultUnknownKIDWait.
	UnknownKIDWait time.Duration
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Algorithms == nil {
		c.Algorithms = defaultAlgorithms
	}
	if c.Refresh.Min == 0 {
		c.Refresh.Min = DefaultRefreshMin
	}
	if c.Refresh.Max == 0 {
		c.Refresh.Max = max(DefaultRefreshMax, c.Refresh.Min)
	}
	if c.Refresh.UnknownKIDEvery == 0 {
		c.Refresh.UnknownKIDEvery = DefaultUnknownKIDEvery
	}
	if c.Refresh.UnknownKIDWait == 0 {
		c.Refresh.UnknownKIDWait = DefaultUnknownKIDWait
	}
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = DefaultHTTPTimeout
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	return c
}

// validate checks a Config with defaults applied and returns every problem at once,
// each a *ConfigError, together with the allowlist as a set and the extra CA roots.
func (c Config) validate() (algSet, *x509.CertPool, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Issuer: c.Issuer, Field: field, Problem: fmt.Sprintf(format, args...)})
	}

	if c.Issuer == "" {
		bad("Issuer", "is required: the exact iss value of the authorization server's tokens")
	} else if err := checkURL(c.Issuer, c.InsecureHTTP); err != nil {
		bad("Issuer", "%v", err)
	} else if u, _ := url.Parse(c.Issuer); u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		bad("Issuer", "must not have a query or fragment (RFC 8414 §2)")
	}
	if c.JWKSURI != "" && c.JWKSFile != "" {
		bad("JWKSFile", "set either JWKSURI or JWKSFile, not both")
	}
	if c.JWKS != "" && (c.JWKSURI != "" || c.JWKSFile != "") {
		bad("JWKS", "set one of JWKSURI, JWKSFile and JWKS")
	}
	if c.JWKSURI != "" {
		if err := checkURL(c.JWKSURI, c.InsecureHTTP); err != nil {
			bad("JWKSURI", "%v", err)
		}
	}
	if c.IssuerCheckURL != "" {
		if c.JWKSURI == "" {
			bad("IssuerCheckURL", "has no use without JWKSURI: discovery checks the issuer already, and a file or JWKS fetches nothing")
		} else if err := checkURL(c.IssuerCheckURL, c.InsecureHTTP); err != nil {
			bad("IssuerCheckURL", "%v", err)
		}
	}

	if c.BearerTokenFile != "" {
		switch {
		case c.JWKSFile != "":
			bad("BearerTokenFile", "has no use with JWKSFile, which fetches nothing")
		case c.JWKS != "":
			bad("BearerTokenFile", "has no use with JWKS, which fetches nothing")
		case c.InsecureHTTP:
			bad("BearerTokenFile", "a credential is never sent over plain http to a host that is not loopback; remove InsecureHTTP")
		}
		if _, err := readBearerToken(c.BearerTokenFile); err != nil {
			bad("BearerTokenFile", "%v", err)
		}
	}

	var allowed algSet
	if len(c.Algorithms) == 0 {
		bad("Algorithms", "is empty: it would turn the algorithm check off; leave it out for the default (%s)", strings.Join(defaultAlgorithms, " "))
	}
	for _, a := range c.Algorithms {
		b := algBit(a)
		switch {
		case b != 0:
			allowed |= b
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			bad("Algorithms", "%q is HMAC: a shared secret cannot come from a published key set", a)
		case strings.EqualFold(a, "none"):
			bad("Algorithms", `"none" means unsigned tokens and is never allowed`)
		default:
			bad("Algorithms", "%q is not a supported algorithm (supported: %s; names are case-sensitive)", a, strings.Join(defaultAlgorithms, " "))
		}
	}

	if c.JWKS != "" && allowed != 0 && c.MaxKeys >= 0 {
		if int64(len(c.JWKS)) > c.MaxResponseBytes {
			bad("JWKS", "is %d bytes, over the cap of %d", len(c.JWKS), c.MaxResponseBytes)
		} else if parsed, err := parseJWKS([]byte(c.JWKS), allowed, c.MaxKeys); err != nil {
			// parseJWKS words a fetch's failure; nothing is fetched here.
			msg := strings.TrimPrefix(err.Error(), ErrFetch.Error()+": ")
			for i, sk := range parsed.skipped {
				if i == 3 {
					msg += fmt.Sprintf("; and %d more", len(parsed.skipped)-i)
					break
				}
				msg += fmt.Sprintf("; key %d: %s (%s)", sk.index, sk.reason, sk.detail)
			}
			bad("JWKS", "%s", msg)
		}
	}

	r := c.Refresh
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"Refresh.Min", r.Min}, {"Refresh.Max", r.Max}, {"Refresh.UnknownKIDEvery", r.UnknownKIDEvery}, {"Refresh.UnknownKIDWait", r.UnknownKIDWait}, {"HTTPTimeout", c.HTTPTimeout}} {
		if d.v < 0 {
			bad(d.field, "must be positive, got %s", d.v)
		}
	}
	if r.Min > r.Max {
		bad("Refresh.Min", "%s is longer than Refresh.Max %s", r.Min, r.Max)
	}
	if c.MaxResponseBytes < 0 {
		bad("MaxResponseBytes", "must be positive")
	}
	if c.MaxKeys < 0 {
		bad("MaxKeys", "must be positive")
	}

	var roots *x509.CertPool
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			bad("CAFile", "cannot be read: %v", err)
		} else {
			roots, err = x509.SystemCertPool()
			if err != nil {
				roots = x509.NewCertPool()
			}
			if !roots.AppendCertsFromPEM(pem) {
				bad("CAFile", "%s holds no PEM certificate", c.CAFile)
			}
		}
	}
	return allowed, roots, errors.Join(errs...)
}

// checkURL applies the scheme rule of docs/keys.md: https, or http to a loopback host
// (tests and the demo), or http anywhere when InsecureHTTP is set.
func checkURL(raw string, insecureHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("is not a URL: %w", err)
	}
	if u.Host == "" || !u.IsAbs() {
		return fmt.Errorf("%q is not an absolute URL with a host", raw)
	}
	if u.User != nil {
		return fmt.Errorf("must not carry credentials")
	}
	return schemerule.Check(raw, u, insecureHTTP)
}
