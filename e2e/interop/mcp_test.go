//go:build e2e

package interop_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
)

const otherMCPResource = "https://other.example.com/mcp" // another MCP server of the same provider

// TestMCPThroughTheSidecar: an MCP client and server that nobody here wrote (the
// official MCP TypeScript SDK, testdata/oidc/mcp-client.mjs and mcp-server.mjs), with
// node-oidc-provider (mcp-provider.mjs) as the authorization server and the real
// tokengate binary between them, configured with `resource.identifier` = its own URL +
// /mcp. Given only the server's URL and its client credentials, the SDK's client finds
// its way: the 401, the resource_metadata it names, the authorization server the
// metadata names, that server's metadata, a client_credentials token for the resource;
// then it calls a tool over Streamable HTTP, whose Server-Sent Events must reach it one
// by one. On /admin/mcp, which needs mcp:admin, its mcp:tools token gets 403
// insufficient_scope naming mcp:admin, and the client steps up (the test records how:
// the SDK's own step-up, or its auth() with the scope the challenge named). A token the
// provider issued for another resource is refused with reason audience. The MCP server
// must receive exactly the allowed requests, each with the session it handed out, and
// never the token. Of docs/standards.md's rows it proves MCP1, MCP2, MCP3's header on
// every request, MCP4's 403 half and MCP5's 401 and 403.
func TestMCPThroughTheSidecar(t *testing.T) {
	began := time.Now()
	addr := e2etest.FreeAddr(t)
	base := "http://" + addr
	identifier := base + "/mcp"
	site := mcpSite{
		identifier: identifier,
		admin:      base + "/admin/mcp",
		metadata:   base + "/.well-known/oauth-protected-resource/mcp",
	}

	keysFile := filepath.Join(t.TempDir(), "keys.json")
	b, _ := json.Marshal(map[string]any{"keys": []any{privateJWK(newKey(t, "mcp"))}})
	if err := os.WriteFile(keysFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	op := startNodeScript(t, "mcp-provider.mjs", func(port string) []string {
		return []string{"--port", port, "--keys", keysFile, "--resource", identifier}
	})
	srv := startNodeScript(t, "mcp-server.mjs", func(port string) []string { return []string{"--port", port} })
	sc := startSidecarAt(t, addr, mcpConfig(op.Issuer, srv.Issuer, identifier))
	site.issuer, site.tokenEndpoint = op.Issuer, op.discovery(t).TokenEndpoint

	// The metadata the client will read.
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
		BearerMethods        []string `json:"bearer_methods_supported"`
	}
	getJSON(t, site.metadata, &prm)
	if prm.Resource != identifier || !slices.Equal(prm.AuthorizationServers, []string{op.Issuer}) ||
		!slices.Equal(prm.ScopesSupported, []string{"mcp:admin", "mcp:tools"}) || !slices.Equal(prm.BearerMethods, []string{"header"}) {
		t.Fatalf("metadata at %s: %+v", site.metadata, prm)
	}

	cl := startMCPClient(t, identifier, site.admin, op.Issuer)
	before := sc.Metrics(t)
	var took []string // each phase's time, as the test saw it
	phase := func(name string, v any, want []string) {
		t.Helper()
		start := time.Now()
		cl.next(t, v)
		took = append(took, name+" "+time.Since(start).Round(time.Millisecond).String())
		after := sc.Metrics(t)
		if got := routeDecisions(before, after); !slices.Equal(got, want) {
			t.Errorf("%s: decisions %q, want %q", name, got, want)
		}
		before = after
	}
	// The 401 challenge names the metadata (MCP1) and, since a resource is configured,
	// the scope the route needs (MCP4's 401 half).
	mcpChallenge := fmt.Sprintf(`Bearer realm="mcp", resource_metadata=%q`, site.metadata)

	// 1. Discovery, token, tools/list, echo with progress.
	var connect mcpConnect
	phase("connect", &connect, []string{"missing_token POST /mcp", "ok GET /mcp", "ok POST /mcp", "ok POST /mcp", "ok POST /mcp", "ok POST /mcp"})
	if connect.Error != nil {
		t.Fatalf("connect: %+v\n%s", connect.Error, exchangeTable(connect.HTTP))
	}
	session := connect.Session
	if session == "" {
		t.Fatalf("the SDK's transport has no Mcp-Session-Id after initialize:\n%s", exchangeTable(connect.HTTP))
	}
	site.expect(t, "connect", connect.HTTP, []want{
		{method: "POST", url: identifier, status: 401, rpc: "initialize", challenge: mcpChallenge + `, scope="mcp:tools"`},
		{method: "GET", url: site.metadata, status: 200},
		{method: "GET", url: op.Issuer + "/.well-known/oauth-authorization-server", status: 200},
		{method: "POST", url: site.tokenEndpoint, status: 200, form: map[string]string{"grant_type": "client_credentials", "resource": identifier, "scope": "mcp:tools"}},
		{method: "POST", url: identifier, status: 200, rpc: "initialize", scope: "mcp:tools", sse: true, responseSession: session},
		{method: "POST", url: identifier, status: 202, rpc: "notifications/initialized", scope: "mcp:tools", session: session},
		{method: "GET", url: identifier, status: 200, scope: "mcp:tools", session: session, sse: true},
		{method: "POST", url: identifier, status: 200, rpc: "tools/list", scope: "mcp:tools", session: session, sse: true},
		{method: "POST", url: identifier, status: 200, rpc: "tools/call", scope: "mcp:tools", session: session, sse: true},
	})
	if tk := connect.Token; tk.Aud != identifier || tk.ClaimsScope != "mcp:tools" || tk.ClientID != "mcp-client" || tk.Iss != op.Issuer {
		t.Errorf("the SDK's token: %+v, want aud %s, scope mcp:tools, client_id mcp-client, iss %s", tk, identifier, op.Issuer)
	}
	if !slices.Equal(connect.Tools, []string{"echo"}) || connect.Echo.Text != "echo: hello through tokengate" {
		t.Errorf("tools %v, echo %q", connect.Tools, connect.Echo.Text)
	}
	// Streamed: the server sends the progress events 200 ms apart, then the result; a
	// proxy that buffered the response would deliver them all at once at the end.
	p := connect.Echo.Progress
	if len(p) != 3 || p[1].MS-p[0].MS < 100 || p[2].MS-p[1].MS < 100 || connect.Echo.ResultMS-p[0].MS < 300 {
		t.Errorf("progress events at %+v, result at %.1f ms: not streamed event by event", p, connect.Echo.ResultMS)
	}

	// 2. Step-up.
	var up mcpStepUp
	phase("step-up", &up, []string{"insufficient_scope /admin/mcp", "ok /admin/mcp", "ok /admin/mcp", "ok /admin/mcp", "ok /admin/mcp", "ok /admin/mcp"})
	stepUpPath := site.checkStepUp(t, &up)
	adminSession := up.Session
	if adminSession == "" {
		t.Fatalf("no session on the admin endpoint: %+v\n%s", up.Error, exchangeTable(up.HTTP))
	}
	site.expect(t, "admin endpoint", up.HTTP, []want{
		{method: "POST", url: site.admin, status: 200, rpc: "initialize", scope: "mcp:tools mcp:admin", sse: true, responseSession: adminSession},
		{method: "POST", url: site.admin, status: 202, rpc: "notifications/initialized", scope: "mcp:tools mcp:admin", session: adminSession},
		{method: "GET", url: site.admin, status: 200, scope: "mcp:tools mcp:admin", session: adminSession, sse: true},
		{method: "POST", url: site.admin, status: 200, rpc: "tools/list", scope: "mcp:tools mcp:admin", session: adminSession, sse: true},
		{method: "POST", url: site.admin, status: 200, rpc: "tools/call", scope: "mcp:tools mcp:admin", session: adminSession, sse: true},
	})
	if up.Error != nil || !slices.Equal(up.Tools, []string{"purge"}) || up.Purge != "purged" {
		t.Errorf("after the step-up: error %+v, tools %v, purge %q", up.Error, up.Tools, up.Purge)
	}

	// 3. A token for another resource.
	var other mcpOther
	phase("other resource", &other, []string{"audience POST /mcp"})
	if other.Token.Aud != otherMCPResource || other.Token.Scope != "mcp:tools" || other.Error == nil || other.Error.Code != 401 {
		t.Errorf("another resource's token %+v: error %+v, want a 401", other.Token, other.Error)
	}
	site.expect(t, "another resource", other.HTTP, []want{
		{method: "GET", url: op.Issuer + "/.well-known/oauth-authorization-server", status: 200},
		{method: "POST", url: site.tokenEndpoint, status: 200, form: map[string]string{"grant_type": "client_credentials", "resource": otherMCPResource, "scope": "mcp:tools"}},
		{method: "POST", url: identifier, status: 401, rpc: "initialize", scope: "mcp:tools", aud: otherMCPResource,
			challenge: mcpChallenge + `, error="invalid_token", error_description="the access token is not meant for this API", scope="mcp:tools"`},
	})

	// 4. The sessions end.
	var closing mcpClose
	phase("close", &closing, []string{"ok /admin/mcp", "ok DELETE /mcp"})
	site.expect(t, "close", closing.HTTP, []want{
		{method: "DELETE", url: identifier, status: 200, scope: "mcp:tools", session: session},
		{method: "DELETE", url: site.admin, status: 200, scope: "mcp:tools mcp:admin", session: adminSession},
	})
	cl.finish(t)

	// The MCP server got exactly the allowed requests, each with the session it had
	// handed out on that endpoint, the claims of a token for the resource with the
	// route's scope, and no token.
	allowed := map[string]int{}
	for _, phase := range [][]exchange{connect.HTTP, up.HTTP, other.HTTP, closing.HTTP} {
		for _, e := range phase {
			if strings.HasPrefix(e.URL, base+"/") && e.Status < 400 && !strings.HasPrefix(e.URL, base+"/.well-known/") {
				allowed[fmt.Sprintf("%s %s %s %v", e.Method, strings.TrimPrefix(e.URL, base), e.Session, e.RPC)]++
			}
		}
	}
	received := map[string]int{}
	events := 0
	for _, line := range srv.output() {
		if strings.HasPrefix(line, "EVENT ") {
			events++
		}
		rest, ok := strings.CutPrefix(line, "REQ ")
		if !ok {
			continue
		}
		var r serverRequest
		if err := json.Unmarshal([]byte(rest), &r); err != nil {
			t.Fatalf("the MCP server wrote %q: %v", line, err)
		}
		received[fmt.Sprintf("%s %s %s %v", r.Method, r.Path, r.Session, r.RPC)]++
		wantScope, wantSession := "mcp:tools", session
		if r.Path == "/admin/mcp" {
			wantScope, wantSession = "mcp:admin", adminSession
		}
		isInit := slices.Equal(r.RPC, []string{"initialize"})
		streams := r.Method == "GET" || slices.ContainsFunc(r.RPC, func(m string) bool { return !strings.HasPrefix(m, "notifications/") })
		switch {
		case r.Status >= 400:
			t.Errorf("the MCP server answered %d: %s", r.Status, rest)
		case streams && r.ContentType != "text/event-stream":
			t.Errorf("the MCP server answered %s %s %v with %q, want Server-Sent Events", r.Method, r.Path, r.RPC, r.ContentType)
		case r.Authorization != "":
			t.Errorf("the MCP server got an Authorization header (%s): %s", r.Authorization, rest)
		case r.Aud != identifier || r.ClientID != "mcp-client" || !slices.Contains(strings.Fields(r.Scope), wantScope):
			t.Errorf("the MCP server got claims aud %q, client_id %q, scope %q: %s", r.Aud, r.ClientID, r.Scope, rest)
		case isInit && (r.Session != "" || r.ResponseSession != wantSession):
			t.Errorf("initialize: session %q in, %q out, want none in, %q out", r.Session, r.ResponseSession, wantSession)
		case !isInit && r.Session != wantSession:
			t.Errorf("%s %s reached the MCP server with session %q, want %q", r.Method, r.Path, r.Session, wantSession)
		}
	}
	if !maps.Equal(allowed, received) {
		t.Errorf("requests the client had allowed:\n%v\nrequests the MCP server received:\n%v", allowed, received)
	}
	if events != 3 {
		t.Errorf("the MCP server sent %d progress events, want 3", events)
	}
	tokens := 0
	for _, l := range op.output() {
		if strings.HasPrefix(l, "TOKEN ") {
			tokens++
		}
	}

	m := sc.Metrics(t)
	t.Logf("metadata %s: resource %s, authorization_servers %v, scopes_supported %v", site.metadata, prm.Resource, prm.AuthorizationServers, prm.ScopesSupported)
	t.Logf("connect (SDK 401 → metadata → AS metadata → token → MCP), client-side:\n%s", exchangeTable(connect.HTTP))
	first, tok := connect.HTTP[0], connect.HTTP[min(3, len(connect.HTTP)-1)]
	t.Logf("discovery and token: %.1f ms from the first request to the token (token request %.1f ms); echo: progress at %v ms, result at %.1f ms",
		tok.At+tok.MS-first.At, tok.MS, progressTimes(p), connect.Echo.ResultMS)
	t.Logf("step-up: %s", stepUpPath)
	t.Logf("step-up, the SDK's transport:\n%s\nthe challenge's metadata:\n%s\nauth() with the challenge's scope:\n%s\nauth() with the stepped-up provider:\n%s\nthe admin endpoint with its token:\n%s",
		exchangeTable(up.SDK.HTTP), exchangeTable(up.Challenge.HTTP), exchangeTable(up.AuthAsIs.HTTP), exchangeTable(up.AuthStepped.HTTP), exchangeTable(up.HTTP))
	t.Logf("another resource:\n%s", exchangeTable(other.HTTP))
	t.Logf("close:\n%s", exchangeTable(closing.HTTP))
	t.Logf("tokengate decisions: ok %v, missing_token %v, insufficient_scope %v, audience %v; the provider issued %d tokens; phases: %s (the first with node's start); whole test %s",
		e2etest.Sum(m, "tokengate_decisions_total", `reason="ok"`), e2etest.Sum(m, "tokengate_decisions_total", `reason="missing_token"`),
		e2etest.Sum(m, "tokengate_decisions_total", `reason="insufficient_scope"`), e2etest.Sum(m, "tokengate_decisions_total", `reason="audience"`),
		tokens, strings.Join(took, ", "), time.Since(began).Round(time.Millisecond))
}

// checkStepUp checks the step-up phase and says which way the client stepped up. With
// SDK 1.32.2 its transport does answer the 403 (it re-reads the metadata the challenge
// names), then refuses the metadata: its resource (…/mcp) is not a prefix of the URL it
// called (…/admin/mcp), and tokengate serves one resource per sidecar. The client then
// steps up with the SDK's auth(): with the provider as it was, auth() ignores the
// challenge's scope (a client_credentials request asks for the provider's own scope), so
// the step-up takes a provider whose scope adds the one the challenge named.
func (s mcpSite) checkStepUp(t *testing.T, up *mcpStepUp) string {
	t.Helper()
	if up.SDK.Connected {
		return "the SDK's transport stepped up by itself on the 403 (a newer behaviour than this test was written for: simplify it)"
	}
	deny := fmt.Sprintf(`Bearer realm="mcp", resource_metadata=%q, error="insufficient_scope", error_description="the access token lacks a scope this route requires", scope="mcp:admin"`, s.metadata)
	s.expect(t, "the SDK's step-up", up.SDK.HTTP, []want{
		{method: "POST", url: s.admin, status: 403, rpc: "initialize", scope: "mcp:tools", challenge: deny},
		{method: "GET", url: s.metadata, status: 200},
		{method: "GET", url: s.issuer + "/.well-known/oauth-authorization-server", status: 200},
	})
	wantErr := fmt.Sprintf("Protected resource %s does not match expected %s (or origin)", s.identifier, s.admin)
	if up.SDK.Error == nil || up.SDK.Error.Message != wantErr {
		t.Fatalf("the SDK's step-up failed with %+v, want %q", up.SDK.Error, wantErr)
	}
	if c := up.Challenge; c.Error != "insufficient_scope" || c.Scope != "mcp:admin" || c.ResourceMetadata != s.metadata || c.Resource != s.identifier {
		t.Errorf("the challenge as the SDK parsed it: %+v", c)
	}
	formScope := func(h []exchange) string {
		for _, e := range h {
			if e.URL == s.tokenEndpoint {
				return e.Form["scope"]
			}
		}
		return "(no token request)"
	}
	if got := formScope(up.AuthAsIs.HTTP); got != "mcp:tools" || up.AuthAsIs.Token.ClaimsScope != "mcp:tools" {
		t.Errorf("auth() with scope mcp:admin and the mcp:tools provider asked for %q and got %q; the test expects SDK 1.32.2 to ask for the provider's own scope", got, up.AuthAsIs.Token.ClaimsScope)
	}
	st := up.AuthStepped
	if got := formScope(st.HTTP); st.Result != "AUTHORIZED" || got != "mcp:tools mcp:admin" || st.Token.ClaimsScope != "mcp:tools mcp:admin" || st.Token.Aud != s.identifier {
		t.Errorf("the step-up's auth(): %s, asked for %q, token %+v", st.Result, got, st.Token)
	}
	return fmt.Sprintf("the SDK's transport answered the 403 but refused the metadata (%q); auth() with the challenge's scope asked for %q (the provider's own); auth() with a provider of scope %q got a token with %q",
		up.SDK.Error.Message, formScope(up.AuthAsIs.HTTP), formScope(st.HTTP), st.Token.ClaimsScope)
}

// mcpConfig is the sidecar's configuration in front of the MCP server: the resource is
// the MCP endpoint (no issuer audiences: the identifier is the accepted audience); the
// MCP endpoint's three methods need mcp:tools, the admin endpoint mcp:admin. The MCP
// server gets the token's claims as headers and never the token, so it cannot pass it
// on (the MCP specification forbids token passthrough).
func mcpConfig(issuer, upstream, identifier string) string {
	return fmt.Sprintf(`upstream: %q
realm: "mcp"
resource:
  identifier: %q
  name: "Interop MCP server"
issuers:
  - issuer: %q
    algorithms: [RS256]
    tokenType: at+jwt
routes:
  - match: "POST /mcp"
    scopes: [mcp:tools]
  - match: "GET /mcp"
    scopes: [mcp:tools]
  - match: "DELETE /mcp"
    scopes: [mcp:tools]
  - match: "/admin/mcp"
    scopes: [mcp:admin]
forward:
  claims: {sub: X-Auth-Subject, client_id: X-Auth-Client-Id, scope: X-Auth-Scopes, aud: X-Auth-Audience}
  removeAuthorization: true
`, upstream, identifier, issuer)
}

// startNodeScript runs a script of testdata/oidc that listens on 127.0.0.1:PORT and
// prints `READY http://127.0.0.1:PORT` (mcp-provider.mjs, mcp-server.mjs); args gives
// its arguments for a port. The port was just freed, so a failed start is retried for a
// while. It is stopped when the test ends, and its output logged if the test failed.
func startNodeScript(t *testing.T, script string, args func(port string) []string) *provider {
	t.Helper()
	_, port, _ := net.SplitHostPort(e2etest.FreeAddr(t))
	p := &provider{Issuer: "http://127.0.0.1:" + port, port: port, dir: t.TempDir()}
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s output:\n%s", script, strings.Join(p.output(), "\n"))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := p.startScript(script, args(port)...)
		if err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start: %v\n%s", script, err, strings.Join(p.output(), "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
}

func startMCPClient(t *testing.T, server, admin, issuer string) *stepClient {
	t.Helper()
	return startStepClient(t, "mcp-client.mjs", "--server", server, "--admin", admin, "--issuer", issuer, "--other-resource", otherMCPResource)
}

// exchange is one HTTP request the SDK made through the client's fetch.
type exchange struct {
	Method          string            `json:"method"`
	URL             string            `json:"url"`
	Status          int               `json:"status"`
	Token           *tokenSeen        `json:"token"`
	Authorization   string            `json:"authorization"` // the scheme of a non-bearer Authorization
	Session         string            `json:"session"`
	ResponseSession string            `json:"response_session"`
	RPC             []string          `json:"rpc"`
	Form            map[string]string `json:"form"`
	ContentType     string            `json:"content_type"`
	WWWAuthenticate string            `json:"www_authenticate"`
	At              float64           `json:"at"` // ms since the client started
	MS              float64           `json:"ms"` // until the response headers
	Error           string            `json:"error"`
}

type tokenSeen struct {
	Aud   string `json:"aud"`
	Scope string `json:"scope"`
}

// sdkToken is the token an OAuthClientProvider holds, with its claims decoded.
type sdkToken struct {
	TokenType   string `json:"token_type"`
	Scope       string `json:"scope"`
	Aud         string `json:"aud"`
	ClaimsScope string `json:"claims_scope"`
	ClientID    string `json:"client_id"`
	Iss         string `json:"iss"`
}

type clientError struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
}

type mcpConnect struct {
	Session string       `json:"session"`
	Token   sdkToken     `json:"token"`
	Tools   []string     `json:"tools"`
	Echo    echoResult   `json:"echo"`
	Error   *clientError `json:"error"`
	HTTP    []exchange   `json:"http"`
}

type echoResult struct {
	Text     string          `json:"text"`
	Progress []progressEvent `json:"progress"`
	ResultMS float64         `json:"result_ms"` // since the call
}

// progressEvent is a progress notification as the client got it.
type progressEvent struct {
	Progress int     `json:"progress"`
	MS       float64 `json:"ms"` // since the call
}

type mcpStepUp struct {
	SDK struct {
		Connected bool         `json:"connected"`
		Error     *clientError `json:"error"`
		Token     sdkToken     `json:"token"`
		HTTP      []exchange   `json:"http"`
	} `json:"sdk"`
	Challenge struct {
		Error            string     `json:"error"`
		Scope            string     `json:"scope"`
		ResourceMetadata string     `json:"resource_metadata"`
		Resource         string     `json:"resource"`
		HTTP             []exchange `json:"http"`
	} `json:"challenge"`
	AuthAsIs struct {
		Token sdkToken   `json:"token"`
		HTTP  []exchange `json:"http"`
	} `json:"auth_as_is"`
	AuthStepped struct {
		Result string     `json:"result"`
		Token  sdkToken   `json:"token"`
		HTTP   []exchange `json:"http"`
	} `json:"auth_stepped"`
	Session string       `json:"session"`
	Tools   []string     `json:"tools"`
	Purge   string       `json:"purge"`
	Error   *clientError `json:"error"`
	HTTP    []exchange   `json:"http"`
}

type mcpOther struct {
	Token     tokenSeen    `json:"token"`
	Connected bool         `json:"connected"`
	Error     *clientError `json:"error"`
	HTTP      []exchange   `json:"http"`
}

type mcpClose struct {
	HTTP []exchange `json:"http"`
}

// serverRequest is a REQ line of mcp-server.mjs.
type serverRequest struct {
	Method          string   `json:"method"`
	Path            string   `json:"path"`
	Session         string   `json:"session"`
	ResponseSession string   `json:"response_session"`
	Status          int      `json:"status"`
	ContentType     string   `json:"content_type"`
	RPC             []string `json:"rpc"`
	Scope           string   `json:"scope"`
	Aud             string   `json:"aud"`
	ClientID        string   `json:"client_id"`
	Authorization   string   `json:"authorization"`
}

// mcpSite holds the URLs of one test: the MCP resource, the admin endpoint, the
// metadata, the issuer and its token endpoint.
type mcpSite struct {
	identifier, admin, metadata, issuer, tokenEndpoint string
}

// want is what one exchange must be; empty fields are not checked, except that an
// exchange with no scope must carry no bearer token and one with no session no
// Mcp-Session-Id.
type want struct {
	method, url     string
	status          int
	rpc             string
	scope, aud      string // of the bearer token sent; aud defaults to the identifier
	session         string
	responseSession string
	sse             bool
	form            map[string]string
	challenge       string
}

// expect checks the client's exchanges of a phase against wants, in order.
func (s mcpSite) expect(t *testing.T, what string, got []exchange, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Errorf("%s: %d HTTP requests, want %d:\n%s", what, len(got), len(wants), exchangeTable(got))
		return
	}
	for i, w := range wants {
		e := got[i]
		var bad []string
		if e.Method != w.method || e.URL != w.url || e.Status != w.status {
			bad = append(bad, fmt.Sprintf("%s %s → %d, want %s %s → %d", e.Method, e.URL, e.Status, w.method, w.url, w.status))
		}
		if w.rpc != "" && !slices.Equal(e.RPC, []string{w.rpc}) {
			bad = append(bad, fmt.Sprintf("JSON-RPC %v, want %s", e.RPC, w.rpc))
		}
		aud := cmp.Or(w.aud, s.identifier)
		switch {
		case w.scope == "" && e.Token != nil:
			bad = append(bad, fmt.Sprintf("sent a bearer token %+v", *e.Token))
		case w.scope != "" && (e.Token == nil || e.Token.Scope != w.scope || e.Token.Aud != aud):
			bad = append(bad, fmt.Sprintf("token %+v, want aud %s, scope %q", e.Token, aud, w.scope))
		}
		if e.Session != w.session {
			bad = append(bad, fmt.Sprintf("sent Mcp-Session-Id %q, want %q", e.Session, w.session))
		}
		if w.responseSession != "" && e.ResponseSession != w.responseSession {
			bad = append(bad, fmt.Sprintf("got Mcp-Session-Id %q, want %q", e.ResponseSession, w.responseSession))
		}
		if w.sse && e.ContentType != "text/event-stream" {
			bad = append(bad, fmt.Sprintf("Content-Type %q, want text/event-stream", e.ContentType))
		}
		if w.challenge != "" && e.WWWAuthenticate != w.challenge {
			bad = append(bad, fmt.Sprintf("WWW-Authenticate %q, want %q", e.WWWAuthenticate, w.challenge))
		}
		if w.form != nil {
			if e.Authorization != "Basic" {
				bad = append(bad, fmt.Sprintf("client authentication %q, want Basic", e.Authorization))
			}
			for k, v := range w.form {
				if e.Form[k] != v {
					bad = append(bad, fmt.Sprintf("form %s=%q, want %q", k, e.Form[k], v))
				}
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s, request %d: %s", what, i+1, strings.Join(bad, "; "))
		}
	}
}

// exchangeTable is one line per exchange, for logs.
func exchangeTable(h []exchange) string {
	var b strings.Builder
	for _, e := range h {
		fmt.Fprintf(&b, "  %-6s %-72s → %d %6.1fms", e.Method, e.URL, e.Status, e.MS)
		if len(e.RPC) > 0 {
			fmt.Fprintf(&b, "  %s", strings.Join(e.RPC, ","))
		}
		if e.Token != nil {
			fmt.Fprintf(&b, "  token[aud %s, scope %q]", e.Token.Aud, e.Token.Scope)
		}
		if e.Form != nil {
			fmt.Fprintf(&b, "  %s resource=%s scope=%q", e.Form["grant_type"], e.Form["resource"], e.Form["scope"])
		}
		if e.Session != "" {
			b.WriteString("  session→")
		}
		if e.ResponseSession != "" {
			b.WriteString("  ←session")
		}
		if e.ContentType == "text/event-stream" {
			b.WriteString("  SSE")
		}
		if e.WWWAuthenticate != "" {
			fmt.Fprintf(&b, "\n         WWW-Authenticate: %s", e.WWWAuthenticate)
		}
		b.WriteString("\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

var routeLabel = regexp.MustCompile(`[{,]route="([^"]*)"`)

// routeDecisions are the decisions made between two scrapes, as "reason route", sorted.
func routeDecisions(before, after map[string]float64) []string {
	var out []string
	for series, v := range after {
		if !strings.HasPrefix(series, "tokengate_decisions_total{") {
			continue
		}
		var reason, route string
		if m := reasonLabel.FindStringSubmatch(series); m != nil {
			reason = m[1]
		}
		if m := routeLabel.FindStringSubmatch(series); m != nil {
			route = m[1]
		}
		for range int(v - before[series]) {
			out = append(out, reason+" "+route)
		}
	}
	slices.Sort(out)
	return out
}

func progressTimes(p []progressEvent) []float64 {
	var out []float64
	for _, e := range p {
		out = append(out, e.MS)
	}
	return out
}
