// Package wellknown names where an authorization server's metadata is, for jwks
// (jwks_uri) and introspect (introspection_endpoint), which read the same documents.
package wellknown

import (
	"net/url"
	"strings"
)

// MetadataURLs are the metadata URLs to try for an issuer, in order: OpenID Connect
// Discovery ({issuer}/.well-known/openid-configuration), then RFC 8414, which inserts
// the well-known segment between host and path. For an issuer without a path the two
// RFC 8414 spellings are the same URL.
func MetadataURLs(issuer string) []string {
	urls := []string{strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"}
	u, err := url.Parse(issuer)
	if err != nil {
		return urls
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	u.Path, u.RawPath = "", ""
	return append(urls, u.String()+"/.well-known/oauth-authorization-server"+path)
}
