// Package schemerule is the one rule for the URLs tokengate fetches from or sends
// tokens to (docs/keys.md): https, or plain http to a loopback host (tests, the demo),
// or plain http anywhere when the operator says so (insecureHTTP). jwks applies it to
// issuers and JWKS URIs, introspect to introspection endpoints, middleware to the
// resource identifier.
package schemerule

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Loopback reports whether host (without port) is "localhost" or an address in
// 127.0.0.0/8 or ::1.
func Loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Check applies the rule to u, parsed from raw (quoted in the error).
func Check(raw string, u *url.URL, insecureHTTP bool) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if insecureHTTP || Loopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q is plain http to a host that is not loopback; use https (or set InsecureHTTP, never in production)", raw)
	}
	return fmt.Errorf("%q: scheme must be https", raw)
}
