package sidecar_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/sidecar"
)

const minimal = `upstream: http://127.0.0.1:8080
issuers:
  - issuer: https://auth.example.com
    audiences: [https://orders.example.com]
routes:
  - match: /
`

func TestLoadDefaults(t *testing.T) {
	l, err := sidecar.Load("t.yaml", []byte(minimal), sidecar.ForProxy, sidecar.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Listen != ":8000" || l.Admin != ":9090" || l.Gate.Realm != "127.0.0.1" || l.Gate.Shadow || l.Upstream.String() != "http://127.0.0.1:8080" {
		t.Fatalf("%+v", l)
	}
	if len(l.Forward.Claims) != 3 || l.Forward.Claims["sub"] != "X-Auth-Subject" {
		t.Fatalf("claims %v", l.Forward.Claims)
	}
	if l.Gate.Tokens.Leeway != 0 || l.Gate.Tokens.NoCache {
		t.Fatalf("tokens %+v", l.Gate.Tokens)
	}

	l, err = sidecar.Load("t.yaml", []byte(minimal+`mode: shadow
realm: orders
tokens:
  leeway: 0s
  cache: {entries: 0}
`), sidecar.ForProxy, sidecar.Overrides{Listen: "127.0.0.1:1", Upstream: "http://127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Gate.Shadow || l.Gate.Realm != "orders" || l.Gate.Tokens.Leeway >= 0 || !l.Gate.Tokens.NoCache || l.Listen != "127.0.0.1:1" || l.Upstream.Port() != "2" {
		t.Fatalf("%+v %+v", l.Gate, l)
	}

	// check and demo do not need an upstream.
	noUp := strings.Replace(minimal, "upstream: http://127.0.0.1:8080\n", "", 1)
	if _, err := sidecar.Load("t.yaml", []byte(noUp), sidecar.ForCheck, sidecar.Overrides{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sidecar.Load("t.yaml", []byte(noUp), sidecar.ForProxy, sidecar.Overrides{}); err == nil || !strings.Contains(err.Error(), "upstream: is required") {
		t.Fatalf("sidecar without upstream: %v", err)
	}
}

func TestLoadProblems(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string // each a line of the error
	}{
		{"unknown key", strings.Replace(minimal, "audiences:", "audience:", 1),
			[]string{`t.yaml:4: issuers[0].audience: unknown key (known here: issuer, jwksURI, jwksFile, audiences,`}},
		{"unknown top-level key", minimal + "lisen: :80\n", []string{`t.yaml:7: lisen: unknown key`}},
		{"key twice", minimal + "listen: :1\nlisten: :2\n", []string{`t.yaml:8: listen: appears twice`}},
		{"wrong type", minimal + "tokens:\n  maxBytes: lots\n", []string{"t.yaml:8: cannot unmarshal `lots` into int"}},
		{"bad duration", minimal + "tokens:\n  leeway: soon\n", []string{"t.yaml:8: cannot unmarshal `soon` into a duration such as 30s"}},
		{"not YAML", "issuers: [\n", []string{"t.yaml:"}},
		{"empty", "", []string{"t.yaml: the file is empty"}},
		{"every problem at once", `upstream: localhost:8080
mode: strict
issuers:
  - issuer: http://auth.example.com
    algorithms: [HS256]
routes:
  - match: "GET /a/{x"
  - match: "/"
    public: true
    scopes: [a]
forward:
  claims: {sub: "X Subject", client_id: Authorization}
`, []string{
			`t.yaml:1: upstream: "localhost:8080" is not an http(s) URL`,
			`t.yaml:2: mode: "strict": use enforce or shadow`,
			`t.yaml:4: issuers[0].audiences: is empty`,
			`t.yaml:4: issuers[0].issuer: "http://auth.example.com" is plain http`,
			`t.yaml:5: issuers[0].algorithms: "HS256" is HMAC`,
			`t.yaml:7: routes[0].match:`,
			`t.yaml:9: routes[1].public: a public route cannot require scopes`,
			`t.yaml:12: forward.claims.sub: "X Subject" is not a header name`,
			`t.yaml:12: forward.claims.client_id: "Authorization" is a header the proxy manages`,
		}},
		{"no routes", strings.Replace(minimal, "routes:\n  - match: /\n", "", 1), []string{"routes: at least one route is required"}},
		{"same listen and admin", minimal + "listen: :9090\n", []string{"admin: is the same address as listen"}},
		{"two claims, one header", minimal + "forward:\n  claims: {sub: X-User, client_id: x_user}\n", []string{`t.yaml:8: forward.claims.sub: header "X-User" is also used for claim "client_id"`}},
		// The libraries name Go fields; the file's user reads its own keys, in the
		// problem's text too.
		{"library problems in the file's words", `upstream: http://127.0.0.1:8080
upstreamPaths: express
issuers:
  - issuer: https://auth.example.com
    audiences: [x]
    tokenType: at+jwt
    audienceClaims: [client_id]
tokens:
  cache:
    entries: -1
routes:
  - match: "GET /Orders"
  - match: "GET /orders"
`, []string{
			`t.yaml:7: issuers[0].audienceClaims: RFC 9068 tokens (tokenType at+jwt) carry aud; audienceClaims is for issuers`,
			`t.yaml:10: tokens.cache.entries: must not be negative`,
			`t.yaml:13: routes[1].match: "GET /orders" is the same route as another (routes[0], "GET /Orders") to an API that matches paths in any case (upstreamPaths express): remove one, or choose upstreamPaths exact`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sidecar.Load("t.yaml", []byte(tc.file), sidecar.ForProxy, sidecar.Overrides{})
			if err == nil {
				t.Fatal("accepted")
			}
			var p *sidecar.Problem
			if !errors.As(err, &p) {
				t.Fatalf("%T is not a *Problem", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "sidecar.") || strings.Contains(err.Error(), "!!") {
				t.Errorf("a Go type name leaks into the message:\n%v", err)
			}
		})
	}
}

// Unknown keys do not hide the other problems: a new user gets every one in one pass,
// in the order of the file (issue 11).
func TestLoadReportsEveryProblemSortedByLine(t *testing.T) {
	file := `upstream: localhost:8080
issuers:
  - issuer: https://auth.example.com
    audience: [x]
routes:
  - match: "GET /a/{x"
tokens:
  leway: 30s
`
	_, err := sidecar.Load("t.yaml", []byte(file), sidecar.ForProxy, sidecar.Overrides{})
	if err == nil {
		t.Fatal("accepted")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`t.yaml:1: upstream: "localhost:8080" is not an http(s) URL`,
		`t.yaml:3: issuers[0].audiences: is empty`,
		`t.yaml:4: issuers[0].audience: unknown key`,
		`t.yaml:6: routes[0].match:`,
		`t.yaml:8: tokens.leway: unknown key`,
	}
	if len(got) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("problem %d is %q, want it to start with %q", i+1, got[i], w)
		}
	}
	// Values of the wrong type are reported each, with the unknown keys.
	_, err = sidecar.Load("t.yaml", []byte(minimal+"tokens:\n  maxBytes: lots\n  leeway: soon\n  lewey: 1s\n"), sidecar.ForProxy, sidecar.Overrides{})
	for _, w := range []string{"t.yaml:8: cannot unmarshal `lots`", "t.yaml:9: cannot unmarshal `soon`", "t.yaml:10: tokens.lewey: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("lacks %q:\n%v", w, err)
		}
	}
}

func TestLoadFile(t *testing.T) {
	if _, err := sidecar.LoadFile("/nonexistent/tokengate.yaml", sidecar.ForProxy, sidecar.Overrides{}); err == nil || !strings.Contains(err.Error(), "/nonexistent/tokengate.yaml") {
		t.Fatalf("%v", err)
	}
}
