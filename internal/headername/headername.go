// Package headername compares HTTP header names the way tokengate does wherever a
// header must be removed or may not be set: policy (identity headers, forward.claims,
// forward.stripHeaders) and the sidecar's proxy share this one rule.
package headername

import "strings"

// Key is how a header name is compared: lower case, '_' as '-'. Some servers (CGI and
// WSGI gateways, nginx with underscores_in_headers) turn X_Auth_Subject into the same
// variable as X-Auth-Subject, so a client could otherwise smuggle one past a deletion
// of the other (oauth2-proxy CVE-2025-64484, docs/standards.md X40).
func Key(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}
