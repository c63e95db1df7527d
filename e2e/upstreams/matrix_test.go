//go:build e2e

package upstreams_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/realupstream"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// The security review's matrix (issue 10): the real tokengate binary in front of each
// real upstream, and for each class of finding, what reached the upstream as the
// upstream itself recorded it. The routes are docs/configuration.md's example, with its
// catch-all "/" that accepts any valid token: the configuration under which the review
// got through.

const audience = "https://orders.example.com"

// matrixConfig is the example configuration for an upstream, with the style the test
// picks ("" for the default, strict).
func matrixConfig(issuer, upstream, style string) string {
	paths := ""
	if style != "" {
		paths = "upstreamPaths: " + style + "\n"
	}
	return fmt.Sprintf(`upstream: %q
realm: orders-api
%sissuers:
  - issuer: %q
    audiences: [%q]
routes:
  - match: "GET /healthz"
    public: true
  - match: "GET /orders/{id}"
    scopes: [orders:read]
  - match: "POST /orders"
    anyScopes: [orders:write, orders:admin]
  - match: "DELETE /orders/{id}"
    scopes: [orders:admin]
  - match: "/admin/"
    scopes: [admin]
  - match: "GET /ws/push"
    scopes: [orders:read]
    websocket: true
  - match: "/"
    scopes: []
forward:
  claims: {sub: X-Auth-Subject, client_id: X-Auth-Client-Id, scope: X-Auth-Scopes, groups: X-Auth-Groups}
`, upstream, paths, issuer, audience)
}

// outcome is what one attack got: tokengate's status, and what the upstream recorded.
type outcome struct {
	status  int
	records []realupstream.Record
	note    string
}

func (o outcome) String() string {
	if len(o.records) == 0 {
		return fmt.Sprintf("%d, nothing reached the upstream%s", o.status, o.note)
	}
	var parts []string
	for _, r := range o.records {
		parts = append(parts, fmt.Sprintf("%s %s %s as %s", r.Proto, r.Method, r.Path, r.Route))
	}
	return fmt.Sprintf("%d, the upstream ran %s%s", o.status, strings.Join(parts, "; "), o.note)
}

// attack is one row: what is sent through tokengate, and what must hold of the
// outcome.
type attack struct {
	class, name string
	kinds       []realupstream.Kind // nil: every upstream
	send        func(t *testing.T, m *matrix) outcome
	check       func(o outcome) string // "" when it holds, else what is wrong
}

type matrix struct {
	kind realupstream.Kind
	up   *realupstream.Server
	sc   *e2etest.Sidecar
	as   *jwkstest.Server
}

func (m *matrix) token(claims jwkstest.Claims) string {
	c := jwkstest.Claims{"sub": "alice", "client_id": "c1"}
	for k, v := range claims {
		c[k] = v
	}
	return m.as.MustMint(c)
}

// raw sends request bytes through tokengate and collects what reached the upstream.
func (m *matrix) raw(t *testing.T, raw string) outcome {
	t.Helper()
	m.up.Reset()
	status, _, _, err := realupstream.RawRequest(t, m.sc.Listen, raw, ioTimeout)
	o := outcome{status: status, records: m.up.Records()}
	if err != nil {
		o.note = fmt.Sprintf(" (%v)", err)
	}
	return o
}

// request is a raw HTTP/1.1 request with a Host and the given header lines.
func (m *matrix) request(method, target string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, m.sc.Listen)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	return b.String() + "\r\n"
}

func reachedNothing(o outcome) string {
	if len(o.records) > 0 {
		return "reached the upstream: " + o.String()
	}
	if o.status < 400 {
		return fmt.Sprintf("tokengate answered %d", o.status)
	}
	return ""
}

func reachedRoute(routes ...string) func(outcome) string {
	return func(o outcome) string {
		if o.status != 200 || len(o.records) != 1 {
			return "want one request on " + strings.Join(routes, " or ") + ", got " + o.String()
		}
		for _, r := range routes {
			if o.records[0].Route == r {
				return ""
			}
		}
		return "ran " + o.records[0].Route + ", want " + strings.Join(routes, " or ")
	}
}

func attacks() []attack {
	bearer := func(tok string) string { return "Authorization: Bearer " + tok }
	var rows []attack

	// 1. h2c upgrade smuggling: the upgrade must never be answered 101, and nothing
	// inside it may reach the upstream.
	for _, where := range []struct{ name, target string }{{"on a public route", "/healthz"}, {"with a low-scope token on the catch-all", "/profile"}} {
		rows = append(rows, attack{
			class: "h2c smuggling", name: "Upgrade: h2c " + where.name,
			send: func(t *testing.T, m *matrix) outcome {
				m.up.Reset()
				head := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", where.target, m.sc.Listen, bearer(m.token(jwkstest.Claims{"scope": "profile"})))
				if where.target == "/healthz" {
					head = fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n", where.target, m.sc.Listen)
				}
				res, err := realupstream.H2CSmuggle(t, m.sc.Listen, head, []realupstream.InnerRequest{
					{Method: "GET", Path: "/admin/secret", Authority: m.sc.Listen, Header: http.Header{"X-Auth-Subject": {"admin"}}},
					{Method: "DELETE", Path: "/orders/1", Authority: m.sc.Listen},
				})
				o := outcome{status: res.UpgradeStatus, records: m.up.Records()}
				if err != nil {
					o.note = fmt.Sprintf(" (%v)", err)
				}
				if res.UpgradeStatus == 101 {
					// A record of the tunnel may be written after the 101 was read.
					deadline := time.Now().Add(5 * time.Second)
					for len(o.records) < 3 && time.Now().Before(deadline) {
						time.Sleep(50 * time.Millisecond)
						o.records = m.up.Records()
					}
					o.note += fmt.Sprintf(" (101; %d HTTP/2 answers inside)", len(res.Inner))
				}
				return o
			},
			check: func(o outcome) string {
				if o.status == 101 {
					return "answered 101: " + o.String()
				}
				if len(o.records) != 1 || o.records[0].Proto != "HTTP/1.1" || o.records[0].Route == "admin" ||
					o.records[0].Header("Upgrade") != "" || o.records[0].Header("Http2-Settings") != "" {
					return "want the plain request alone, without its Upgrade: " + o.String()
				}
				return ""
			},
		})
	}

	// 2. Paths that frameworks normalize, with a token without orders:read: none may
	// reach a handler whose route needs a scope the token lacks.
	for _, p := range []struct{ method, target string }{
		{"GET", "/ORDERS/1"}, {"GET", "/orders/1/"}, {"POST", "/Orders"}, {"GET", "/Orders/1/"},
		{"GET", "/orders;x/1"}, {"GET", "/orders;/1"}, {"GET", "/admin;x/secret"}, {"GET", "/ADMIN/x"},
		{"get", "/orders/1"}, {"GET", "/orders/..;/admin/x"}, {"GET", "/orders/%2e%2e/admin/x"},
		{"GET", "/admin%2fx"}, {"GET", "/orders/1#x"}, {"DELETE", "/ORDERS/1"},
	} {
		rows = append(rows, attack{
			class: "path normalization", name: p.method + " " + p.target + " with a token without the route's scope",
			send: func(t *testing.T, m *matrix) outcome {
				return m.raw(t, m.request(p.method, p.target, bearer(m.token(jwkstest.Claims{"scope": "profile"}))))
			},
			check: func(o outcome) string {
				for _, r := range o.records {
					if r.Route != "fallback" && r.Route != "health" {
						return "reached a protected handler: " + o.String()
					}
				}
				return ""
			},
		})
	}
	// ...while a token with the scope gets through however the path is spelt.
	rows = append(rows, attack{
		class: "path normalization", name: "GET /ORDERS/1 with orders:read (no false denial)",
		send: func(t *testing.T, m *matrix) outcome {
			return m.raw(t, m.request("GET", "/ORDERS/1", bearer(m.token(jwkstest.Claims{"scope": "orders:read"}))))
		},
		check: reachedRoute("orders.show", "fallback"),
	})

	// 3. A slow body without a token: answered at once, nothing reaches the upstream.
	rows = append(rows, attack{
		class: "slow body", name: "token-less POST declaring 100000 bytes, sending 1",
		send: func(t *testing.T, m *matrix) outcome {
			start := time.Now()
			o := m.raw(t, fmt.Sprintf("POST /orders HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000\r\n\r\nx", m.sc.Listen))
			o.note += fmt.Sprintf(" (answered in %s)", time.Since(start).Round(time.Millisecond))
			return o
		},
		check: func(o outcome) string {
			if o.status != 401 {
				return "not answered 401: " + o.String()
			}
			return reachedNothing(o)
		},
	})

	// 5. List claims reach the upstream unambiguously; a scope item with a space does
	// not reach it at all.
	for _, g := range []struct {
		groups any
		want   string
	}{{[]string{"eng,admins"}, "eng%2Cadmins"}, {[]string{"eng", "admins"}, "eng,admins"}} {
		rows = append(rows, attack{
			class: "list claims", name: fmt.Sprintf("groups %q", g.groups),
			send: func(t *testing.T, m *matrix) outcome {
				return m.raw(t, m.request("GET", "/profile", bearer(m.token(jwkstest.Claims{"scope": "profile", "groups": g.groups}))))
			},
			check: func(o outcome) string {
				if s := reachedRoute("fallback")(o); s != "" {
					return s
				}
				if got := o.records[0].Headers["x-auth-groups"]; len(got) != 1 || got[0] != g.want {
					return fmt.Sprintf("X-Auth-Groups %q, want %q", got, g.want)
				}
				return ""
			},
		})
	}
	for _, scope := range []any{[]string{"read admin"}, "foo\u00a0orders:read", "foo\u2003orders:read", "foo\u0085orders:read", "foo\u3000orders:read"} {
		rows = append(rows, attack{
			class: "scope separators", name: fmt.Sprintf("scope %q on the catch-all", scope),
			send: func(t *testing.T, m *matrix) outcome {
				return m.raw(t, m.request("GET", "/orders/1", bearer(m.token(jwkstest.Claims{"scope": scope}))))
			},
			check: reachedNothing,
		})
	}

	// 7. A WebSocket tunnel to a push-only upstream ends soon after its client leaves.
	rows = append(rows, attack{
		class: "tunnels", name: "WebSocket to a push-only upstream, client closes",
		kinds: []realupstream.Kind{realupstream.Go},
		send: func(t *testing.T, m *matrix) outcome {
			m.up.Reset()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, "ws://"+m.sc.Listen+"/ws/push", &websocket.DialOptions{
				HTTPHeader: http.Header{"Authorization": {"Bearer " + m.token(jwkstest.Claims{"scope": "orders:read"})}},
			})
			if err != nil {
				return outcome{note: fmt.Sprintf(" (dial: %v %v)", err, resp)}
			}
			if _, _, err := c.Read(ctx); err != nil {
				return outcome{note: fmt.Sprintf(" (read: %v)", err)}
			}
			open := m.up.OpenPushes()
			c.CloseNow() // the client leaves without a close handshake
			start := time.Now()
			for m.up.OpenPushes() > 0 && time.Since(start) < 10*time.Second {
				time.Sleep(20 * time.Millisecond)
			}
			return outcome{status: 101, note: fmt.Sprintf(" (%d push open; after the client left, %d after %s)", open, m.up.OpenPushes(), time.Since(start).Round(10*time.Millisecond))}
		},
		check: func(o outcome) string {
			if o.status != 101 || !strings.Contains(o.note, "1 push open; after the client left, 0 after") {
				return "the tunnel did not end: " + o.String()
			}
			return ""
		},
	})

	// 8. Hygiene.
	rows = append(rows, attack{
		class: "override headers", name: "POST /orders/1 with X-HTTP-Method-Override: DELETE and a low-scope token",
		send: func(t *testing.T, m *matrix) outcome {
			return m.raw(t, m.request("POST", "/orders/1", bearer(m.token(jwkstest.Claims{"scope": "profile"})),
				"X-HTTP-Method-Override: DELETE", "Content-Length: 0"))
		},
		check: func(o outcome) string {
			for _, r := range o.records {
				if r.Route == "orders.delete" || r.Method != "POST" || r.Header("X-Http-Method-Override") != "" {
					return "the override reached the upstream: " + o.String()
				}
			}
			return ""
		},
	})
	rows = append(rows, attack{
		class: "override headers", name: "X-Original-URL, X-Rewrite-URL, X-Real-IP, X-Client-IP, X-Forwarded-Port, X-Forwarded-Prefix",
		send: func(t *testing.T, m *matrix) outcome {
			return m.raw(t, m.request("GET", "/profile", bearer(m.token(jwkstest.Claims{"scope": "profile"})),
				"X-Original-URL: /admin/x", "X-Rewrite-URL: /admin/x", "X-Real-IP: 10.0.0.1", "X-Client-IP: 10.0.0.1",
				"X-Forwarded-Port: 443", "X-Forwarded-Prefix: /admin"))
		},
		check: func(o outcome) string {
			if s := reachedRoute("fallback")(o); s != "" {
				return s
			}
			for _, h := range []string{"X-Original-Url", "X-Rewrite-Url", "X-Real-Ip", "X-Client-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix"} {
				if v := o.records[0].Header(h); v != "" {
					return fmt.Sprintf("%s reached the upstream: %q", h, v)
				}
			}
			return ""
		},
	})
	rows = append(rows, attack{
		class: "Host", name: "HTTP/1.0 without Host",
		send: func(t *testing.T, m *matrix) outcome {
			o := m.raw(t, "GET /healthz HTTP/1.0\r\n\r\n")
			for _, r := range o.records {
				o.note += fmt.Sprintf(" (the upstream saw Host %q)", r.Host)
			}
			return o
		},
		check: func(o outcome) string {
			if o.status != 400 {
				return fmt.Sprintf("answered %d, want 400", o.status)
			}
			return reachedNothing(o)
		},
	})
	rows = append(rows, attack{
		class: "query", name: "access_token removed byte for byte",
		send: func(t *testing.T, m *matrix) outcome {
			o := m.raw(t, m.request("GET", "/orders/1?b=2&access_token=x&a=%2F&b=1", bearer(m.token(jwkstest.Claims{"scope": "orders:read"}))))
			for _, r := range o.records {
				o.note += fmt.Sprintf(" (query %q)", r.RawQuery)
			}
			return o
		},
		check: func(o outcome) string {
			if s := reachedRoute("orders.show")(o); s != "" {
				return s
			}
			if q := o.records[0].RawQuery; q != "b=2&a=%2F&b=1" {
				return fmt.Sprintf("query %q, want b=2&a=%%2F&b=1", q)
			}
			return ""
		},
	})
	for _, tok := range []struct{ name string }{{"forged"}, {"expired"}} {
		rows = append(rows, attack{
			class: "unverified tokens", name: "a " + tok.name + " token on a public route",
			send: func(t *testing.T, m *matrix) outcome {
				var token string
				switch tok.name {
				case "forged":
					token = m.as.MustMint(jwkstest.Claims{"sub": "admin", "scope": "admin"}, jwkstest.WithSigner(jwkstest.MustGenerateKey("evil", "RS256")))
				default:
					token = m.token(jwkstest.Claims{"exp": time.Now().Add(-time.Hour).Unix()})
				}
				o := m.raw(t, m.request("GET", "/healthz", bearer(token)))
				for _, r := range o.records {
					if r.Header("Authorization") != "" {
						o.note += " (with the token)"
					}
				}
				return o
			},
			check: func(o outcome) string {
				if s := reachedRoute("health")(o); s != "" {
					return s
				}
				if o.records[0].Header("Authorization") != "" || o.records[0].Header("X-Auth-Subject") != "" {
					return "the unverified token reached the upstream"
				}
				return ""
			},
		})
	}
	return rows
}

// TestMatrix runs every attack against every upstream, with the default style
// (strict) and with the style that fits the upstream, and logs what reached it.
func TestMatrix(t *testing.T) {
	fits := map[realupstream.Kind]string{
		realupstream.Go: "exact", realupstream.Hypercorn: "exact", realupstream.Express: "express", realupstream.Tomcat: "servlet",
	}
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	var table, versions []string
	for _, k := range realupstream.Kinds() {
		up := realupstream.Start(t, k)
		versions = append(versions, string(k)+": "+up.Version())
		for _, style := range []string{"", fits[k]} {
			name := string(k) + "/" + map[bool]string{true: "strict", false: style}[style == ""]
			t.Run(name, func(t *testing.T) {
				m := &matrix{kind: k, up: up, as: as}
				m.sc = e2etest.StartSidecar(t, e2etest.Options{Config: matrixConfig(as.Issuer, up.URL, style)})
				for _, a := range attacks() {
					if a.kinds != nil && !containsKind(a.kinds, k) {
						continue
					}
					o := a.send(t, m)
					verdict := "ok"
					if problem := a.check(o); problem != "" {
						verdict = "FAIL: " + problem
						t.Errorf("%s: %s: %s", a.class, a.name, problem)
					}
					table = append(table, fmt.Sprintf("%-16s %-18s %s | %s | %s", name, a.class, a.name, o, verdict))
				}
			})
		}
	}
	sort.Stable(sort.StringSlice(table))
	t.Logf("what reached the upstream (%s):\n%s", strings.Join(versions, "; "), strings.Join(table, "\n"))
}

func containsKind(kinds []realupstream.Kind, k realupstream.Kind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}
