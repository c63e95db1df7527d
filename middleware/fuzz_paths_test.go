package middleware_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

// FuzzRouteMatch sends requests with odd methods, request targets and hosts, parsed as
// the HTTP server parses them, through a Gate with the routes of
// docs/configuration.md's example. What must hold: the decision is the same twice; the
// route label is a configured pattern or NoRoute; and a request goes on to the API only
// on a route whose policy it meets, with a path that the API cannot read as another
// route (clean once decoded, no encoded slash or backslash).
func FuzzRouteMatch(f *testing.F) {
	e := newEnv(f, nil)
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	labels := map[string]bool{middleware.NoRoute: true}
	for _, r := range defaultRoutes {
		labels[r.Match] = true
	}
	for _, s := range []struct {
		method, target, host string
		token                bool
	}{
		{"GET", "/orders/1", "api", true},
		{"GET", "/healthz", "api", false},
		{"HEAD", "/healthz", "api", false},
		{"GET", "/healthz/../orders/1", "api", true},
		{"GET", "/orders/1%2Frefund", "api", true},
		{"GET", "/orders/1%5Crefund", "api", true},
		{"GET", "/orders//1", "api", true},
		{"GET", "/orders/./1", "api", true},
		{"GET", "/orders/%2e%2e/admin", "api", true},
		{"GET", "/any/%2e%2e/orders/1", "api", true},
		{"GET", "/shadow/%2e%2e/orders/1", "api", false},
		{"GET", "/Orders/1", "api", true},
		{"GET", "/orders/1?x=/healthz", "api", true},
		{"GET", "http://evil/orders/1", "api", true},
		{"GET", "*", "api", true},
		{"DELETE", "/orders/1", "api", true},
		{"POST", "/orders", "api", true},
		{"get", "/orders/1", "api", true},
		{"GET", "/shadow/x", "api", false},
		{"GET", "/any/%00", "api", true},
		{"GET", "/healthz;x", "api", false},
		{"GET", "/orders/" + strings.Repeat("a", 300), "api", true},
		{"CONNECT", "api:443", "api", true},
		// The readings of the review's finding 2 (issue 10).
		{"GET", "/ORDERS/1", "api", true},
		{"GET", "/orders/1/", "api", true},
		{"POST", "/Orders", "api", true},
		{"get", "/orders/1", "api", true},
		{"GET", "/orders;x/1", "api", true},
		{"GET", "/ANY/x", "api", true},
		{"GET", "/any", "api", true},
	} {
		f.Add(s.method, s.target, s.host, s.token)
	}
	f.Fuzz(func(t *testing.T, method, target, host string, withToken bool) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n"
		if withToken {
			raw += "Authorization: Bearer " + tok + "\r\n"
		}
		req, err := readRequest(raw + "\r\n")
		if err != nil || strings.ContainsAny(method+target+host, "\r\n") {
			return // the server answers 400 itself
		}
		d := e.gate.Decide(req)
		again := e.gate.Decide(req)
		if d.Outcome != again.Outcome || d.Reason != again.Reason || d.Route != again.Route {
			t.Fatalf("%s %q: %s/%s/%s, then %s/%s/%s", method, target, d.Outcome, d.Reason, d.Route, again.Outcome, again.Reason, again.Route)
		}
		if !labels[d.Route] {
			t.Fatalf("%s %q: route label %q is not a configured pattern", method, target, d.Route)
		}
		if !d.Forward() {
			if d.Err == nil {
				t.Fatalf("%s %q: a denial without an error", method, target)
			}
			return
		}
		p := req.URL.Path
		if strings.Contains(p, "//") || strings.Contains(p+"/", "/./") || strings.Contains(p+"/", "/../") ||
			strings.Contains(strings.ToLower(req.URL.RawPath), "%2f") || strings.Contains(strings.ToLower(req.URL.RawPath), "%5c") || strings.Contains(p, `\`) {
			t.Fatalf("%s %q forwarded on route %s with an ambiguous path %q", method, target, d.Route, p)
		}
		get := req.Method == "GET" || req.Method == "HEAD"
		rest, isOrder := strings.CutPrefix(p, "/orders/")
		switch d.Route {
		case "GET /healthz":
			if !get || p != "/healthz" {
				t.Fatalf("%s %q forwarded as the public route", method, target)
			}
		case "GET /orders/{id}":
			if !withToken || !get || !isOrder || rest == "" || strings.Contains(rest, "/") {
				t.Fatalf("%s %q (token %v) forwarded on GET /orders/{id}", method, target, withToken)
			}
		case "/shadow/":
			if !strings.HasPrefix(p, "/shadow/") {
				t.Fatalf("%s %q forwarded on /shadow/", method, target)
			}
		case "/any/":
			if !withToken || !strings.HasPrefix(p, "/any/") {
				t.Fatalf("%s %q (token %v) forwarded on /any/", method, target, withToken)
			}
		default: // POST /orders and DELETE /orders/{id} need scopes the token lacks
			t.Fatalf("%s %q forwarded on %s, whose scopes the token lacks", method, target, d.Route)
		}
	})
}

// readRequest parses a request as net/http's server does.
func readRequest(raw string) (*http.Request, error) {
	return http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
}
