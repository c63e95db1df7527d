package introspect_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func discover(t *testing.T, client *http.Client, issuer string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return introspect.Discover(ctx, client, issuer)
}

func TestDiscoverFound(t *testing.T) {
	for _, tc := range []struct {
		name          string
		oidc, rfc8414 bool
		opts          []jwkstest.Option
	}{
		{"OpenID Connect", true, false, nil},
		{"RFC 8414", false, true, nil},
		{"RFC 8414, issuer with a path", false, true, []jwkstest.Option{jwkstest.WithIssuerPath("/realms/shop")}},
		{"https", true, true, []jwkstest.Option{jwkstest.WithTLS()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as, err := jwkstest.NewServer(tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer as.Close()
			as.SetDiscovery(tc.oidc, tc.rfc8414)
			var client *http.Client // Discover's own
			if as.CertPEM() != nil {
				client = as.Client()
			}
			got, err := discover(t, client, as.Issuer)
			if err != nil || got != as.IntrospectionURL() {
				t.Fatalf("%q %v", got, err)
			}
		})
	}
}

func TestDiscoverRefuses(t *testing.T) {
	as := server(t, nil)
	t.Run("no metadata", func(t *testing.T) {
		as.SetDiscovery(false, false)
		defer as.SetDiscovery(true, true)
		_, err := discover(t, nil, as.Issuer)
		if !errors.Is(err, introspect.ErrUnavailable) || errors.Is(err, introspect.ErrNoEndpoint) || !strings.Contains(err.Error(), "status 404") {
			t.Fatal(err)
		}
	})
	t.Run("issuer mismatch", func(t *testing.T) {
		lie := "https://evil.example"
		as.SetDiscoveryIssuer(&lie)
		defer as.SetDiscoveryIssuer(nil)
		_, err := discover(t, nil, as.Issuer)
		if !errors.Is(err, introspect.ErrNoEndpoint) || !strings.Contains(err.Error(), `names issuer "https://evil.example"`) {
			t.Fatal(err)
		}
	})
	t.Run("trailing slash", func(t *testing.T) {
		if _, err := discover(t, nil, as.Issuer+"/"); !errors.Is(err, introspect.ErrNoEndpoint) {
			t.Fatal(err)
		}
	})
	t.Run("down", func(t *testing.T) {
		as.SetDown(true)
		defer as.SetDown(false)
		if _, err := discover(t, nil, as.Issuer); !errors.Is(err, introspect.ErrUnavailable) {
			t.Fatal(err)
		}
	})

	// Documents a jwkstest server cannot serve.
	var issuer string
	var doc func(w http.ResponseWriter)
	srv := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		doc(w)
	})
	issuer = srv.URL
	for _, tc := range []struct {
		name string
		doc  func(w http.ResponseWriter)
		want error
	}{
		{"no introspection_endpoint", func(w http.ResponseWriter) {
			_, _ = io.WriteString(w, `{"issuer":"`+issuer+`","jwks_uri":"`+issuer+`/jwks"}`)
		}, introspect.ErrNoEndpoint},
		{"http endpoint elsewhere", func(w http.ResponseWriter) {
			_, _ = io.WriteString(w, `{"issuer":"`+issuer+`","introspection_endpoint":"http://auth.example.com/introspect"}`)
		}, nil}, // allowed: the issuer itself is http
		{"endpoint not a URL", func(w http.ResponseWriter) {
			_, _ = io.WriteString(w, `{"issuer":"`+issuer+`","introspection_endpoint":"/introspect"}`)
		}, introspect.ErrNoEndpoint},
		{"not JSON", func(w http.ResponseWriter) { _, _ = io.WriteString(w, "<html>") }, introspect.ErrUnavailable},
		{"oversized", func(w http.ResponseWriter) {
			_, _ = io.WriteString(w, `{"issuer":"`+issuer+`","introspection_endpoint":"`+issuer+`/i","pad":"`+strings.Repeat("x", introspect.MaxMetadataBytes)+`"}`)
		}, introspect.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc = tc.doc
			_, err := discover(t, nil, issuer)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("%v, want %v", err, tc.want)
			}
		})
	}
}

// An https issuer's metadata may not send the token to plain http elsewhere.
func TestDiscoverHTTPSIssuerNeedsHTTPSEndpoint(t *testing.T) {
	var issuer string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"issuer":"`+issuer+`","introspection_endpoint":"http://auth.example.com/introspect"}`)
	}))
	defer srv.Close()
	issuer = srv.URL
	if _, err := discover(t, srv.Client(), issuer); !errors.Is(err, introspect.ErrNoEndpoint) || !strings.Contains(err.Error(), "plain http") {
		t.Fatal(err)
	}
}
