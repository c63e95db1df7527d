package wellknown

import (
	"strings"
	"testing"
)

func TestMetadataURLs(t *testing.T) {
	for issuer, want := range map[string][]string{
		"https://a.example.com":              {"https://a.example.com/.well-known/openid-configuration", "https://a.example.com/.well-known/oauth-authorization-server"},
		"https://a.example.com/":             {"https://a.example.com/.well-known/openid-configuration", "https://a.example.com/.well-known/oauth-authorization-server"},
		"https://a.example.com/realms/shop":  {"https://a.example.com/realms/shop/.well-known/openid-configuration", "https://a.example.com/.well-known/oauth-authorization-server/realms/shop"},
		"https://a.example.com/tenant/v2.0/": {"https://a.example.com/tenant/v2.0/.well-known/openid-configuration", "https://a.example.com/.well-known/oauth-authorization-server/tenant/v2.0"},
	} {
		got := MetadataURLs(issuer)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: %q, want %q", issuer, got, want)
		}
	}
}
