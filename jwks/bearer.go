package jwks

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/tokengate/tokengate/internal/schemerule"
)

// maxBearerTokenBytes caps a bearer token file: a projected ServiceAccount token is
// about 1 KiB, and a larger header would be refused by most servers anyway.
const maxBearerTokenBytes = 16 << 10

// readBearerToken reads the token that path holds, without the white space around it
// (a file written by hand ends with a newline). Its errors name the file, never the
// token.
func readBearerToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot be read: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxBearerTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("cannot be read: %w", err)
	}
	if len(b) > maxBearerTokenBytes {
		return "", fmt.Errorf("%s is over %d bytes: not a token", path, maxBearerTokenBytes)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return "", fmt.Errorf("%s holds no token", path)
	case !isToken68(tok):
		return "", fmt.Errorf("%s does not hold one bearer token (RFC 6750 b64token: letters, digits and -._~+/, then = padding)", path)
	}
	return tok, nil
}

// isToken68 reports whether s is an RFC 6750 b64token, which is all an Authorization
// header may carry after "Bearer ": no space, no line break, nothing that could end the
// header.
func isToken68(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

// bearerTransport sends the token of a file with the requests that go to one of the
// origins it was given, over https or plain http to a loopback host, and with no other
// request. It decides at every hop, a redirect's included: the header is never set on
// the request the client holds, so the client's own forwarding of headers across a
// redirect never carries it. The file is read at every such request, so a token that
// the kubelet rotates is sent as soon as it is written.
type bearerTransport struct {
	base    *http.Transport
	file    string
	origins []string // originOf each configured URL
}

func newBearerTransport(base *http.Transport, file string, urls ...string) *bearerTransport {
	b := &bearerTransport{base: base, file: file}
	for _, raw := range urls {
		if u, err := url.Parse(raw); err == nil && raw != "" {
			b.origins = append(b.origins, originOf(u))
		}
	}
	return b
}

// originOf is scheme://host:port, lower case, with the scheme's default port written
// out, so that https://a.example and https://A.example:443 are one origin.
func originOf(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// sendsTo reports whether a request to u carries the token.
func (b *bearerTransport) sendsTo(u *url.URL) bool {
	if u.Scheme != "https" && (u.Scheme != "http" || !schemerule.Loopback(u.Hostname())) {
		return false
	}
	o := originOf(u)
	for _, allowed := range b.origins {
		if o == allowed {
			return true
		}
	}
	return false
}

func (b *bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !b.sendsTo(req.URL) {
		return b.base.RoundTrip(req)
	}
	tok, err := readBearerToken(b.file)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("%w: %w", errBearerToken, err)
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return b.base.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the transport.
func (b *bearerTransport) CloseIdleConnections() { b.base.CloseIdleConnections() }

// errBearerToken prefixes the errors of a bearer token file.
var errBearerToken = errors.New("bearer token file")

// withheldHint adds to err, a refusal (401 or 403) of a URL the token was not sent
// to, why it was not: the usual cause is a discovery document whose jwks_uri is on
// another origin than the issuer.
func withheldHint(err error, b *bearerTransport, rawURL string) error {
	var se *StatusError
	if b == nil || !errors.As(err, &se) || (se.Code != http.StatusUnauthorized && se.Code != http.StatusForbidden) {
		return err
	}
	u, perr := url.Parse(rawURL)
	if perr != nil || b.sendsTo(u) {
		return err
	}
	return fmt.Errorf("%w (the token of BearerTokenFile was not sent to %s: it goes only to the origins of JWKSURI and IssuerCheckURL (of Issuer, without JWKSURI), over https or plain http to loopback; name the key set in JWKSURI if it is to be fetched with the token)", err, originOf(u))
}
