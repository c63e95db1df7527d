package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/policy"
)

const minimal = `upstream: http://127.0.0.1:8080
issuers:
  - issuer: https://auth.example.com
    audiences: [https://orders.example.com]
routes:
  - match: /
`

func TestLoadDefaults(t *testing.T) {
	l, err := policy.Load("t.yaml", []byte(minimal), policy.ForProxy, policy.Overrides{})
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

	l, err = policy.Load("t.yaml", []byte(minimal+`mode: shadow
realm: orders
tokens:
  leeway: 0s
  cache: {entries: 0}
`), policy.ForProxy, policy.Overrides{Listen: "127.0.0.1:1", Upstream: "http://127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Gate.Shadow || l.Gate.Realm != "orders" || l.Gate.Tokens.Leeway >= 0 || !l.Gate.Tokens.NoCache || l.Listen != "127.0.0.1:1" || l.Upstream.Port() != "2" {
		t.Fatalf("%+v %+v", l.Gate, l)
	}

	// check and demo do not need an upstream.
	noUp := strings.Replace(minimal, "upstream: http://127.0.0.1:8080\n", "", 1)
	if _, err := policy.Load("t.yaml", []byte(noUp), policy.ForCheck, policy.Overrides{}); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load("t.yaml", []byte(noUp), policy.ForProxy, policy.Overrides{}); err == nil || !strings.Contains(err.Error(), "upstream: is required") {
		t.Fatalf("sidecar without upstream: %v", err)
	}
}

func TestLoadProblems(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string // each a line of the error
	}{
		{"unknown key", strings.Replace(minimal, "audiences:", "audience:", 1),
			[]string{`t.yaml:4: issuers[0].audience: unknown key (known here: issuer, jwksURI, jwksFile, jwks, audiences,`}},
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
			`t.yaml:1: upstream: "localhost:8080" is not an http, https or h2c URL`,
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
			_, err := policy.Load("t.yaml", []byte(tc.file), policy.ForProxy, policy.Overrides{})
			if err == nil {
				t.Fatal("accepted")
			}
			var p *policy.Problem
			if !errors.As(err, &p) {
				t.Fatalf("%T is not a *Problem", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "policy.") || strings.Contains(err.Error(), "!!") {
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
	_, err := policy.Load("t.yaml", []byte(file), policy.ForProxy, policy.Overrides{})
	if err == nil {
		t.Fatal("accepted")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`t.yaml:1: upstream: "localhost:8080" is not an http, https or h2c URL`,
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
	_, err = policy.Load("t.yaml", []byte(minimal+"tokens:\n  maxBytes: lots\n  leeway: soon\n  lewey: 1s\n"), policy.ForProxy, policy.Overrides{})
	for _, w := range []string{"t.yaml:8: cannot unmarshal `lots`", "t.yaml:9: cannot unmarshal `soon`", "t.yaml:10: tokens.lewey: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("lacks %q:\n%v", w, err)
		}
	}
}

func TestLoadFile(t *testing.T) {
	if _, err := policy.LoadFile("/nonexistent/tokengate.yaml", policy.ForProxy, policy.Overrides{}); err == nil || !strings.Contains(err.Error(), "/nonexistent/tokengate.yaml") {
		t.Fatalf("%v", err)
	}
}

// TestSenderConstraintProblems: each mistake is named by its key.
func TestSenderConstraintProblems(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const base = "upstream: http://127.0.0.1:1\nissuers: [{issuer: https://as.example.com, audiences: [a]%s}]\nroutes: [{match: /}]\n"
	for _, tc := range []struct {
		issuer, extra, key string
	}{
		{", dpop: sometimes", "externalURL: https://a.example.com\n", "issuers[0].dpop"},
		{", dpop: allowed", "", "externalURL"},
		{", dpop: allowed", "externalURL: https://a.example.com\ntokens: {dpop: {nonces: true, nonceSecretFile: " + secret + "}}\n", "tokens.dpop.nonceSecretFile"},
		{"", "tokens: {dpop: {nonceSecretFile: " + secret + "}}\n", "tokens.dpop.nonceSecretFile"},
		{", dpop: allowed", "externalURL: https://a.example.com\ntokens: {dpop: {algorithms: [HS256]}}\n", "tokens.dpop.algorithms"},
		{"", "tokens: {clientCertificate: {from: header}}\n", "tokens.clientCertificateHeader"},
		{"", "tokens: {clientCertificateHeader: X-Forwarded-Client-Cert}\n", "tokens.clientCertificateHeader"},
		{"", "tokens: {clientCertificate: {from: somewhere}}\n", "tokens.clientCertificate.from"},
		{"", "tls: {cert: /nonexistent}\n", "tls"},
		{"", "tls: {cert: " + secret + ", key: " + secret + "}\n", "tls.cert"},
		{"", "replay: {store: redis}\n", "replay.redis.addrs"},
		{"", "replay: {store: redis, redis: {addrs: [redis]}}\n", "replay.redis.addrs[0]"},
		{"", "replay: {store: redis, redis: {addrs: ['redis:6379'], passwordFile: /nonexistent}}\n", "replay.redis.passwordFile"},
		{"", "replay: {store: redis, redis: {addrs: ['redis:6379'], timeout: 1m}}\n", "replay.redis.timeout"},
		{"", "replay: {store: disk}\n", "replay.store"},
		{"", "replay: {redis: {addrs: ['redis:6379']}}\n", "replay.redis"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			cfg := strings.Replace(base, "%s", tc.issuer, 1) + tc.extra
			_, err := policy.Load("t.yaml", []byte(cfg), policy.ForProxy, policy.Overrides{})
			var p *policy.Problem
			if !errors.As(err, &p) || p.Key != tc.key {
				t.Errorf("%q: error %v, want one naming %s", cfg, err, tc.key)
			}
			if err != nil && strings.Contains(err.Error(), "short") {
				t.Errorf("the secret's content is in the error: %v", err)
			}
		})
	}
}

// upstream takes http, https and h2c (HTTP/2 in clear text, for gRPC), each with a host
// and nothing else; the URL keeps its scheme for the proxy to choose its transport.
func TestUpstreamSchemes(t *testing.T) {
	noUp := strings.Replace(minimal, "upstream: http://127.0.0.1:8080\n", "", 1)
	for _, tc := range []struct {
		upstream string
		ok       bool
	}{
		{"http://127.0.0.1:8080", true},
		{"https://orders.internal", true},
		{"h2c://127.0.0.1:50051", true},
		{"h2c://localhost:50051/prefix", true},
		{"h2c://", false},
		{"h2c:///path", false},
		{"h2c://user:secret@127.0.0.1:50051", false},
		{"h2c://127.0.0.1:50051?a=b", false},
		{"h2c://127.0.0.1:50051#top", false},
		{"grpc://127.0.0.1:50051", false},
		{"ws://127.0.0.1:8080", false},
		{"127.0.0.1:50051", false},
	} {
		t.Run(tc.upstream, func(t *testing.T) {
			l, err := policy.Load("t.yaml", []byte("upstream: \""+tc.upstream+"\"\n"+noUp), policy.ForProxy, policy.Overrides{})
			switch {
			case tc.ok && err != nil:
				t.Fatal(err)
			case tc.ok && l.Upstream.String() != tc.upstream:
				t.Fatalf("upstream %s, want %s", l.Upstream, tc.upstream)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), `t.yaml:1: upstream: "`+tc.upstream+`" is not an http, https or h2c URL`)):
				t.Fatalf("want a problem on line 1: %v", err)
			}
		})
	}
	if _, err := policy.Load("t.yaml", []byte(noUp), policy.ForProxy, policy.Overrides{Upstream: "h2c://127.0.0.1:50051"}); err != nil {
		t.Fatalf("--upstream h2c://: %v", err)
	}
}

// Each purpose asks of the file what its command needs: the sidecar an upstream,
// tokengate authz its listen address, check and a Go service neither.
func TestPurposes(t *testing.T) {
	noUp := strings.Replace(minimal, "upstream: http://127.0.0.1:8080\n", "", 1)
	for _, tc := range []struct {
		name    string
		file    string
		p       policy.Purpose
		problem string // "" when it loads
	}{
		{"sidecar needs upstream", noUp, policy.ForProxy, "t.yaml: upstream: is required"},
		{"check needs nothing", noUp, policy.ForCheck, ""},
		{"service needs nothing", noUp, policy.ForService, ""},
		{"authz needs its listen", noUp, policy.ForAuthz, `t.yaml: authz.listen: is required for tokengate authz: the host:port gateways ask, for example "127.0.0.1:9191"`},
		{"authz needs its listen, named where authz is", noUp + "authz: {}\n", policy.ForAuthz, "t.yaml:6: authz.listen: is required"},
		{"authz without upstream", noUp + "authz:\n  listen: 127.0.0.1:9191\n", policy.ForAuthz, ""},
		{"authz.listen not host:port", noUp + "authz:\n  listen: localhost\n", policy.ForAuthz, `t.yaml:7: authz.listen: "localhost" is not host:port`},
		{"authz.listen is admin", noUp + "authz:\n  listen: :9090\n", policy.ForAuthz, "t.yaml:7: authz.listen: is the same address as admin"},
		{"authz.listen checked for the sidecar too", minimal + "authz:\n  listen: nowhere\n", policy.ForProxy, `t.yaml:8: authz.listen: "nowhere" is not host:port`},
		{"authz key unknown", noUp + "authz:\n  listen: 127.0.0.1:9191\n  port: 1\n", policy.ForAuthz, "t.yaml:8: authz.port: unknown key (known here: listen)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := policy.Load("t.yaml", []byte(tc.file), tc.p, policy.Overrides{})
			if tc.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(tc.file, "listen: 127.0.0.1:9191") != (l.AuthzListen == "127.0.0.1:9191") {
					t.Fatalf("AuthzListen %q", l.AuthzListen)
				}
				return
			}
			var p *policy.Problem
			if !errors.As(err, &p) || !strings.Contains(err.Error(), tc.problem) {
				t.Fatalf("want %q: %v", tc.problem, err)
			}
		})
	}
}

// The files a configuration names are read by their methods, without their content in
// an error.
func TestConfigFiles(t *testing.T) {
	dir := t.TempDir()
	user, pass := filepath.Join(dir, "user"), filepath.Join(dir, "pass")
	for f, content := range map[string]string{user: "tokengate\n", pass: "pa55word\r\n"} {
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	u, p, err := policy.RedisConfig{UsernameFile: user, PasswordFile: pass}.Credentials()
	if err != nil || u != "tokengate" || p != "pa55word" {
		t.Fatalf("%q %q %v", u, p, err)
	}
	if u, p, err := (policy.RedisConfig{}).Credentials(); u != "" || p != "" || err != nil {
		t.Fatalf("no files: %q %q %v", u, p, err)
	}
	if _, _, err := (policy.RedisConfig{PasswordFile: filepath.Join(dir, "none")}).Credentials(); err == nil {
		t.Fatal("a missing password file")
	}
	if pool, err := (policy.RedisConfig{}).RootCAs(); pool != nil || err != nil {
		t.Fatalf("no caFile: %v %v", pool, err)
	}
	if _, err := (policy.RedisConfig{CAFile: pass}).RootCAs(); err == nil || strings.Contains(err.Error(), "pa55word") {
		t.Fatalf("a caFile without certificates: %v", err)
	}
	if pool, err := (policy.TLS{}).ClientCAs(); pool != nil || err != nil {
		t.Fatalf("no clientCA: %v %v", pool, err)
	}
	if _, err := (policy.TLS{ClientCA: user}).ClientCAs(); err == nil {
		t.Fatal("a clientCA without certificates")
	}
}
