package middleware

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/tokengate/tokengate/internal/schemerule"
)

// WellKnownMetadataPath is the well-known path of protected-resource metadata (RFC 9728
// §3), before the resource's own path.
const WellKnownMetadataPath = "/.well-known/oauth-protected-resource"

// Resource describes the API to its clients (RFC 9728 protected-resource metadata): an
// MCP client, for one, finds the authorization server through it.
type Resource struct {
	// Identifier is the resource identifier (RFC 8707, RFC 9728 §1.2): an https URL
	// without query or fragment (http on a loopback host). Tokens whose aud holds it are
	// accepted from every issuer, besides the issuer's Audiences.
	Identifier string
	// Path is where the metadata is served, as requests reach the Gate. Default: the
	// well-known path with the identifier's path appended (RFC 9728 §3.1):
	// /.well-known/oauth-protected-resource for https://orders.example.com,
	// /.well-known/oauth-protected-resource/mcp for https://example.com/mcp.
	Path string
	// Name is resource_name, for people; Documentation resource_documentation, a URL.
	Name, Documentation string
}

// metadataURL is where clients fetch the metadata: the identifier's origin, the
// well-known path, then the identifier's path (RFC 9728 §3.1). A proxy that serves it
// elsewhere sets Resource.Path to what reaches the Gate; the URL stays the standard one.
func (r Resource) metadataURL() string {
	u, _ := url.Parse(r.Identifier)
	return u.Scheme + "://" + u.Host + WellKnownMetadataPath + strings.TrimSuffix(u.EscapedPath(), "/")
}

func (r Resource) path() string {
	if r.Path != "" {
		return r.Path
	}
	u, _ := url.Parse(r.metadataURL())
	return u.Path
}

// validate reports what is wrong with a Resource, by field.
func (r Resource) validate(bad func(field, format string, args ...any)) {
	if r == (Resource{}) {
		return
	}
	u, err := url.Parse(r.Identifier)
	switch {
	case r.Identifier == "":
		bad("Resource.Identifier", "is required: the URL clients know this API by, such as https://orders.example.com")
	case err != nil || !u.IsAbs() || u.Host == "" || u.User != nil:
		bad("Resource.Identifier", "%q is not an absolute URL with a host", r.Identifier)
	case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(r.Identifier, "?#"):
		bad("Resource.Identifier", "%q has a query or a fragment (RFC 9728 §1.2)", r.Identifier)
	case u.Scheme != "https" && !(u.Scheme == "http" && schemerule.Loopback(u.Hostname())):
		bad("Resource.Identifier", "%q is not https (http only on a loopback host)", r.Identifier)
	case !quotable(r.Identifier):
		bad("Resource.Identifier", "%q cannot be quoted in a WWW-Authenticate header", r.Identifier)
	}
	if r.Path != "" && (!strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "?# ")) {
		bad("Resource.Path", "%q is not an absolute path", r.Path)
	}
	if r.Documentation != "" {
		if u, err := url.Parse(r.Documentation); err != nil || !u.IsAbs() || u.Host == "" {
			bad("Resource.Documentation", "%q is not an absolute URL", r.Documentation)
		}
	}
}

// protectedResourceMetadata is the RFC 9728 §2 document; empty members are left out.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
	DPoPAlgs               []string `json:"dpop_signing_alg_values_supported,omitempty"`
	DPoPRequired           bool     `json:"dpop_bound_access_tokens_required,omitempty"`
}

// metadataDocument builds the metadata of a configuration: the issuers, every scope a
// route names, the ways a token may come.
func metadataDocument(cfg Config, dpopAlgs []string) []byte {
	r := cfg.Resource
	m := protectedResourceMetadata{
		Resource:               r.Identifier,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           r.Name,
		ResourceDocumentation:  r.Documentation,
		DPoPAlgs:               dpopAlgs,
	}
	if cfg.Tokens.Query != "" {
		m.BearerMethodsSupported = append(m.BearerMethodsSupported, "query")
	}
	required := len(cfg.Issuers) > 0
	for _, iss := range cfg.Issuers {
		m.AuthorizationServers = append(m.AuthorizationServers, iss.Issuer)
		required = required && iss.DPoP == DPoPRequired
	}
	m.DPoPRequired = required
	for _, rt := range cfg.Routes {
		m.ScopesSupported = append(m.ScopesSupported, rt.Scopes...)
		m.ScopesSupported = append(m.ScopesSupported, rt.AnyScopes...)
	}
	slices.Sort(m.ScopesSupported)
	m.ScopesSupported = slices.Compact(m.ScopesSupported)
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("middleware: marshalling metadata: %v", err)) // strings and bools only
	}
	return append(b, '\n')
}

// MetadataPath is where the Gate serves its protected-resource metadata, "" when
// Config.Resource is not set. Handler serves it there by itself; a service that routes
// itself (Require) mounts MetadataHandler on it.
func (g *Gate) MetadataPath() string { return g.metadataPath }

// MetadataHandler serves the protected-resource metadata (RFC 9728): public, cacheable,
// readable from any origin (a browser-based client fetches it cross-origin). It answers
// 404 when Config.Resource is not set.
func (g *Gate) MetadataHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.metadata == nil {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(g.metadata)
	})
}
