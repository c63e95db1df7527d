package authz_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/authz"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// denialBody is the Gate's JSON body.
type denialBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func decodeBody(t *testing.T, s string) denialBody {
	t.Helper()
	var b denialBody
	if err := json.Unmarshal([]byte(s), &b); err != nil {
		t.Fatalf("body %q: %v", s, err)
	}
	return b
}

// protocolCase asks one protocol about a request: method and URI of the original
// request, and the client's headers.
type protocolCase struct {
	name, label string
	ask         func(r *rig, method, uri string, header ...string) *http.Response
}

var protocols = []protocolCase{
	{"nginx", "nginx", func(r *rig, method, uri string, header ...string) *http.Response {
		h := append([]string{"X-Original-Method: " + method, "X-Original-URI: " + uri}, header...)
		return r.do("GET", "http://127.0.0.1:9191/nginx", h...)
	}},
	{"traefik", "traefik", func(r *rig, method, uri string, header ...string) *http.Response {
		h := append([]string{"X-Forwarded-Method: " + method, "X-Forwarded-Uri: " + uri,
			"X-Forwarded-Host: orders.example.com", "X-Forwarded-Proto: https", "X-Forwarded-For: 192.0.2.1"}, header...)
		return r.do("GET", "http://127.0.0.1:9191/traefik", h...)
	}},
	{"envoy", "envoy_http", func(r *rig, method, uri string, header ...string) *http.Response {
		return r.do(method, "http://orders.example.com"+authz.PathEnvoy+uri, header...)
	}},
}

// TestDecisions: every HTTP protocol answers as the Gate decides, with the identity
// headers of an allowed request and the Gate's RFC 6750 answer to a denied one.
func TestDecisions(t *testing.T) {
	r := newRig(t)
	read := r.token("orders:read")
	expired := r.as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(-time.Hour).Unix()})
	cases := []struct {
		name, method, uri string
		header            []string
		status            int
		challenge         string // WWW-Authenticate, for a denial
		error             string // the body's error
	}{
		{"allowed", "GET", "/orders/42?expand=items", []string{"Authorization: Bearer " + read}, 200, "", ""},
		{"public without token", "GET", "/healthz", nil, 200, "", ""},
		{"no token", "GET", "/orders/42", nil, 401, `Bearer realm="orders-api"`, "missing_token"},
		{"expired", "GET", "/orders/42", []string{"Authorization: Bearer " + expired}, 401,
			`Bearer realm="orders-api", error="invalid_token", error_description="the access token expired"`, "invalid_token"},
		{"scope", "POST", "/orders", []string{"Authorization: Bearer " + read}, 403,
			`Bearer realm="orders-api", error="insufficient_scope", error_description="the access token lacks a scope this route requires", scope="orders:write"`, "insufficient_scope"},
		{"two tokens", "GET", "/orders/42", []string{"Authorization: Bearer " + read, "Authorization: Bearer " + read}, 400,
			`Bearer realm="orders-api", error="invalid_request", error_description="the request carries a malformed or duplicated access token"`, "invalid_request"},
		{"no route", "DELETE", "/orders/42", []string{"Authorization: Bearer " + read}, 403, `Bearer realm="orders-api"`, "no_route"},
		{"encoded slash", "GET", "/orders/4%2F2", []string{"Authorization: Bearer " + read}, 403, `Bearer realm="orders-api"`, "no_route"},
	}
	for _, p := range protocols {
		for _, tc := range cases {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				resp := p.ask(r, tc.method, tc.uri, tc.header...)
				got := body(t, resp)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, got)
				}
				seen := r.lastSeen(t)
				if seen.Method != tc.method || seen.RequestURI != tc.uri {
					t.Errorf("the Gate decided on %s %s, want %s %s", seen.Method, seen.RequestURI, tc.method, tc.uri)
				}
				if tc.status == 200 {
					if got != "" || resp.Header.Get("Cache-Control") != "no-store" {
						t.Errorf("allowed answer: body %q, Cache-Control %q", got, resp.Header.Get("Cache-Control"))
					}
					return
				}
				if v := resp.Header.Values("WWW-Authenticate"); len(v) != 1 || v[0] != tc.challenge {
					t.Errorf("WWW-Authenticate %q, want %q", v, tc.challenge)
				}
				if b := decodeBody(t, got); b.Error != tc.error || b.Description == "" {
					t.Errorf("body %+v, want error %q", b, tc.error)
				}
				if p.name == "nginx" {
					if hb := resp.Header.Get(authz.BodyHeader); hb != strings.TrimSpace(got) {
						t.Errorf("%s %q, want the body %q", authz.BodyHeader, hb, got)
					}
				} else if resp.Header.Get(authz.BodyHeader) != "" {
					t.Errorf("%s set for %s", authz.BodyHeader, p.name)
				}
			})
		}
	}
}

// TestIdentityHeaders: an allowed answer carries the identity headers of the verified
// token, never what the client sent; the Gate never sees the client's identity headers
// either (a rule cannot be fooled by them).
func TestIdentityHeaders(t *testing.T) {
	r := newRig(t)
	read := r.token("orders:read")
	spoofed := []string{"X-Auth-Subject: admin", "x_auth_subject: admin2", "X-AUTH-ROLE: root"}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			resp := p.ask(r, "GET", "/orders/7", append([]string{"Authorization: Bearer " + read}, spoofed...)...)
			body(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for name, want := range map[string]string{"X-Auth-Subject": "user-1", "X-Auth-Client-Id": "client-1", "X-Auth-Scopes": "orders:read"} {
				if v := resp.Header.Values(name); len(v) != 1 || v[0] != want {
					t.Errorf("%s %q, want %q", name, v, want)
				}
			}
			if v := resp.Header.Get("X-Auth-Role"); v != "" {
				t.Errorf("X-Auth-Role %q in the answer", v)
			}
			for name := range r.lastSeen(t).Header {
				if strings.HasPrefix(strings.ReplaceAll(strings.ToLower(name), "_", "-"), "x-auth-") {
					t.Errorf("the Gate saw the client's %s", name)
				}
			}
			remove := resp.Header.Get(authz.EnvoyHeadersToRemove)
			if p.name != "envoy" {
				if remove != "" {
					t.Errorf("%s: %s %q", p.name, authz.EnvoyHeadersToRemove, remove)
				}
				return
			}
			got := strings.Split(remove, ",")
			slices.Sort(got)
			// The spellings the client sent that the answer does not overwrite.
			if want := []string{"x-auth-role", "x_auth_subject"}; !slices.Equal(got, want) {
				t.Errorf("%s %q, want %q", authz.EnvoyHeadersToRemove, got, want)
			}
		})
	}
	t.Run("envoy/claim absent", func(t *testing.T) {
		tok := r.as.MustMint(jwkstest.Claims{"scope": "orders:read", "client_id": jwkstest.Absent})
		resp := r.do("GET", "http://orders.example.com/envoy/orders/7", "Authorization: Bearer "+tok, "X-Auth-Client-Id: spoof")
		body(t, resp)
		if resp.Header.Get("X-Auth-Client-Id") != "" || resp.Header.Get(authz.EnvoyHeadersToRemove) != "x-auth-client-id" {
			t.Errorf("X-Auth-Client-Id %q, %s %q: the client's value must be removed",
				resp.Header.Get("X-Auth-Client-Id"), authz.EnvoyHeadersToRemove, resp.Header.Get(authz.EnvoyHeadersToRemove))
		}
	})
	t.Run("public route gets no identity", func(t *testing.T) {
		resp := r.do("GET", "http://orders.example.com/envoy/healthz", "X-Auth-Subject: admin")
		body(t, resp)
		if resp.StatusCode != 200 || resp.Header.Get("X-Auth-Subject") != "" {
			t.Fatalf("status %d, X-Auth-Subject %q", resp.StatusCode, resp.Header.Get("X-Auth-Subject"))
		}
		got := strings.Split(resp.Header.Get(authz.EnvoyHeadersToRemove), ",")
		slices.Sort(got)
		if want := []string{"x-auth-client-id", "x-auth-scopes", "x-auth-subject"}; !slices.Equal(got, want) {
			t.Errorf("%s %q, want %q", authz.EnvoyHeadersToRemove, got, want)
		}
	})
}

// TestProtocolHeadersNotDecided: the Gate decides on the original request rebuilt from
// the protocol's inputs alone: the protocol's own headers (nginx's X-Original-*,
// Traefik's X-Forwarded-*) and hop-by-hop headers are not part of it; the client's
// are, a client certificate header that a gateway sets among them.
func TestProtocolHeadersNotDecided(t *testing.T) {
	r := newRig(t)
	read := r.token("orders:read")
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			resp := p.ask(r, "GET", "/orders/9?a=1&b=2", "Authorization: Bearer "+read, "Cookie: session=1",
				"X-Forwarded-Client-Cert: Hash=abc", "Connection: X-Hop", "X-Hop: 1", "X-Original-Host: evil", "Te: trailers")
			body(t, resp)
			seen := r.lastSeen(t)
			if seen.URL.Path != "/orders/9" || seen.URL.RawQuery != "a=1&b=2" || seen.Body != http.NoBody {
				t.Errorf("decided on path %q query %q", seen.URL.Path, seen.URL.RawQuery)
			}
			for _, name := range []string{"Authorization", "Cookie", "X-Forwarded-Client-Cert"} {
				if seen.Header.Get(name) == "" {
					t.Errorf("the client's %s was not decided on", name)
				}
			}
			for name := range seen.Header {
				switch {
				case name == "X-Hop", name == "Connection", name == "Te",
					p.name == "nginx" && strings.HasPrefix(name, "X-Original-"),
					p.name == "traefik" && name != "X-Forwarded-Client-Cert" && strings.HasPrefix(name, "X-Forwarded-"):
					t.Errorf("the Gate saw the protocol's %s", name)
				}
			}
		})
	}
}

// TestHost: a route with a host matches the host the gateway forwards.
func TestHost(t *testing.T) {
	r := newRig(t)
	read := r.token("orders:read")
	for _, tc := range []struct {
		name   string
		resp   func() *http.Response
		status int
	}{
		{"nginx Host", func() *http.Response {
			return r.do("GET", "http://api.example.com/nginx", "X-Original-Method: GET", "X-Original-URI: /hosted", "Authorization: Bearer "+read)
		}, 200},
		{"nginx other Host", func() *http.Response {
			return r.do("GET", "http://127.0.0.1/nginx", "X-Original-Method: GET", "X-Original-URI: /hosted", "Authorization: Bearer "+read)
		}, 403},
		{"traefik X-Forwarded-Host", func() *http.Response {
			return r.do("GET", "http://127.0.0.1/traefik", "X-Forwarded-Method: GET", "X-Forwarded-Uri: /hosted",
				"X-Forwarded-Host: api.example.com", "Authorization: Bearer "+read)
		}, 200},
		{"traefik Host is the decision service's", func() *http.Response {
			return r.do("GET", "http://api.example.com/traefik", "X-Forwarded-Method: GET", "X-Forwarded-Uri: /hosted",
				"X-Forwarded-Host: other.example.com", "Authorization: Bearer "+read)
		}, 403},
		{"envoy Host", func() *http.Response {
			return r.do("GET", "http://api.example.com/envoy/hosted", "Authorization: Bearer "+read)
		}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.resp()
			if b := body(t, resp); resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, b)
			}
		})
	}
}

// TestMalformedForwarding: a missing, repeated or malformed forwarded method or URI is
// a 400 counted as an error, and the Gate is never asked: fail closed.
func TestMalformedForwarding(t *testing.T) {
	r := newRig(t)
	read := "Authorization: Bearer " + r.token("orders:read")
	cases := []struct {
		name   string
		target string
		header []string
		label  string
	}{
		{"nginx no URI", "/nginx", []string{"X-Original-Method: GET", read}, "nginx"},
		{"nginx no method", "/nginx", []string{"X-Original-URI: /orders/1", read}, "nginx"},
		{"nginx two URIs", "/nginx", []string{"X-Original-Method: GET", "X-Original-URI: /healthz", "X-Original-URI: /orders/1", read}, "nginx"},
		{"nginx absolute URI", "/nginx", []string{"X-Original-Method: GET", "X-Original-URI: http://evil/orders/1", read}, "nginx"},
		{"nginx relative URI", "/nginx", []string{"X-Original-Method: GET", "X-Original-URI: orders/1", read}, "nginx"},
		{"nginx bad escape", "/nginx", []string{"X-Original-Method: GET", "X-Original-URI: /orders/%zz", read}, "nginx"},
		{"nginx space", "/nginx", []string{"X-Original-Method: GET", "X-Original-URI: /orders/1 HTTP/1.1", read}, "nginx"},
		{"nginx method not a token", "/nginx", []string{"X-Original-Method: GET /", "X-Original-URI: /orders/1", read}, "nginx"},
		{"traefik no URI", "/traefik", []string{"X-Forwarded-Method: GET", read}, "traefik"},
		{"traefik no method", "/traefik", []string{"X-Forwarded-Uri: /orders/1", read}, "traefik"},
		{"traefik bad host", "/traefik", []string{"X-Forwarded-Method: GET", "X-Forwarded-Uri: /orders/1", "X-Forwarded-Host: a b", read}, "traefik"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, errs := r.decided(), r.requests(t, tc.label, "error")
			resp := r.do("GET", "http://127.0.0.1:9191"+tc.target, tc.header...)
			got := body(t, resp)
			if resp.StatusCode != 400 {
				t.Fatalf("status %d, want 400 (%s)", resp.StatusCode, got)
			}
			if b := decodeBody(t, got); b.Error != "invalid_request" {
				t.Errorf("body %+v", b)
			}
			if r.decided() != before {
				t.Error("the Gate was asked")
			}
			if n := r.requests(t, tc.label, "error"); n != errs+1 {
				t.Errorf("error count %v, want %v", n, errs+1)
			}
		})
	}
	t.Run("unknown path", func(t *testing.T) {
		if resp := r.do("GET", "http://127.0.0.1:9191/orders/1", read); resp.StatusCode != 404 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

// TestShadow: a shadow-mode denial is let through, without identity headers, and
// counted as shadow_denied.
func TestShadow(t *testing.T) {
	r := newRig(t, shadow())
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			resp := p.ask(r, "GET", "/orders/1", "X-Auth-Subject: admin")
			body(t, resp)
			if resp.StatusCode != 200 || resp.Header.Get("X-Auth-Subject") != "" {
				t.Fatalf("status %d, X-Auth-Subject %q", resp.StatusCode, resp.Header.Get("X-Auth-Subject"))
			}
			if n := r.requests(t, p.label, "shadow_denied"); n != 1 {
				t.Errorf("shadow_denied %v", n)
			}
		})
	}
}

// TestUnavailable: while no configuration is loaded, and while the issuer's keys never
// loaded, every request is a 503 with Retry-After: never allowed.
func TestUnavailable(t *testing.T) {
	t.Run("no configuration", func(t *testing.T) {
		r := newRig(t)
		r.snap.Store(&authz.Snapshot{})
		for _, p := range protocols {
			resp := p.ask(r, "GET", "/healthz")
			body(t, resp)
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Errorf("%s: status %d, Retry-After %q", p.name, resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			if n := r.requests(t, p.label, "error"); n != 1 {
				t.Errorf("%s: error count %v", p.name, n)
			}
		}
	})
	t.Run("keys not loaded", func(t *testing.T) {
		as := jwkstest.MustNewServer(jwkstest.WithAudience(audience))
		t.Cleanup(as.Close)
		as.SetDown(true)
		r := newRigWith(t, as, false)
		tok := as.MustMint(jwkstest.Claims{"scope": "orders:read"})
		for _, p := range protocols {
			resp := p.ask(r, "GET", "/orders/1", "Authorization: Bearer "+tok)
			got := body(t, resp)
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || decodeBody(t, got).Error != "keys_unavailable" {
				t.Errorf("%s: status %d, Retry-After %q, body %s", p.name, resp.StatusCode, resp.Header.Get("Retry-After"), got)
			}
			if n := r.requests(t, p.label, "denied"); n != 1 {
				t.Errorf("%s: denied count %v", p.name, n)
			}
		}
	})
}

// TestChallenges: with DPoP allowed a denial carries two challenges. Traefik and Envoy
// pass every field on; nginx 1.22 reads one field of a name, so they go in one.
func TestChallenges(t *testing.T) {
	r := newRig(t, withDPoP())
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			resp := p.ask(r, "GET", "/orders/1")
			body(t, resp)
			got := resp.Header.Values("WWW-Authenticate")
			joined := strings.Join(got, ", ")
			if !strings.HasPrefix(joined, `Bearer realm="orders-api"`) || !strings.Contains(joined, `DPoP realm="orders-api", algs="`) {
				t.Fatalf("WWW-Authenticate %q", got)
			}
			if want := 2; p.name == "nginx" {
				if len(got) != 1 {
					t.Errorf("nginx: %d WWW-Authenticate fields, want one", len(got))
				}
			} else if len(got) != want {
				t.Errorf("%d WWW-Authenticate fields, want %d", len(got), want)
			}
		})
	}
}
