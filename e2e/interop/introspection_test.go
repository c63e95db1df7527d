//go:build e2e

package interop_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
)

const (
	jwtClient, jwtSecret  = "jwt-client", "jwt-secret"        // opaque-provider.mjs gives it JWTs
	apiClient, apiSecret  = "orders-api", "orders-api-secret" // the resource server's own credentials
	introspectionCacheTTL = 2 * time.Second                   // the sidecar's cacheTTL
	revocationMargin      = 3 * time.Second                   // on top of cacheTTL, for a busy 2-core machine
	introspectionEndpoint = "/token/introspection"            // where opaque-provider.mjs serves it
	opaqueProviderScript  = "opaque-provider.mjs"
)

// TestOpaqueTokensIntrospected: node-oidc-provider (testdata/oidc/opaque-provider.mjs)
// issues opaque access tokens, and the real binary, configured with only the issuer
// and the resource server's client credentials, finds the introspection endpoint in
// the provider's metadata and asks it about each (RFC 7662), once per cacheTTL. An
// active token is allowed with its claims forwarded; a JWT of the same provider for the
// same resource still takes the JWKS path; a token revoked at the provider (RFC 7009)
// passes only until the cached answer expires and is then 401 inactive; an opaque token
// for another resource is refused by tokengate's audience check; with the provider
// killed a token nobody asked about yet is 503 introspection_unavailable and never
// reaches the API, and once the provider is back (same port, keys and stored tokens) the
// same token is allowed, since failures are not cached.
func TestOpaqueTokensIntrospected(t *testing.T) {
	began := time.Now()
	op := startOpaqueProvider(t)
	up := upstreamtest.Start(t)
	secretFile := filepath.Join(t.TempDir(), "introspection-secret")
	if err := os.WriteFile(secretFile, []byte(apiSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	introspection := fmt.Sprintf("\n    introspection: {clientID: %s, clientSecretFile: %q, opaqueTokens: true, cacheTTL: %s, timeout: 2s}",
		apiClient, secretFile, introspectionCacheTTL)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(op.Issuer, up.URL, requireATJWT+introspection)})
	meta := op.metadata(t)
	if meta.IntrospectionEndpoint != op.Issuer+introspectionEndpoint || meta.RevocationEndpoint == "" {
		t.Fatalf("the provider's metadata: introspection_endpoint %q, revocation_endpoint %q", meta.IntrospectionEndpoint, meta.RevocationEndpoint)
	}

	// Each step's tokengate decisions and introspection calls, as the metrics and the
	// provider saw them.
	before := sc.Metrics(t)
	seen := len(op.introspections(0))
	var rows []string // the results table, logged at the end
	step := func(name string, wantReasons []string, wantCalls map[string]float64) (answers []introspectionAnswer) {
		t.Helper()
		after := sc.Metrics(t)
		if got := decisionDelta(before, after); !slices.Equal(got, wantReasons) {
			t.Errorf("%s: decisions %q, want %q", name, got, wantReasons)
		}
		calls := map[string]float64{}
		for _, r := range []string{"active", "inactive", "error"} {
			calls[r] = introspectionCalls(after, r) - introspectionCalls(before, r)
			if calls[r] != wantCalls[r] {
				t.Errorf("%s: tokengate_introspection_requests_total{result=%q} rose by %v, want %v", name, r, calls[r], wantCalls[r])
			}
		}
		all := op.introspections(0)
		answers = all[seen:]
		seen = len(all)
		if n := int(calls["active"] + calls["inactive"]); len(answers) != n {
			t.Errorf("%s: the provider answered %d introspection requests, tokengate counted %d answers: %+v", name, len(answers), n, answers)
		}
		for _, a := range answers {
			if a.Client != apiClient {
				t.Errorf("%s: introspection authenticated as %q, want %s", name, a.Client, apiClient)
			}
		}
		rows = append(rows, fmt.Sprintf("%-44s decisions %-36s introspection calls active=%v inactive=%v error=%v",
			name, tally(wantReasons), calls["active"], calls["inactive"], calls["error"]))
		before = after
		return answers
	}

	// 1. An opaque token is allowed: introspected once, its claims forwarded.
	opaque, _ := op.token(t, ordersClient, ordersSecret, "orders:read", ordersAPI)
	if strings.Count(opaque.AccessToken, ".") == 2 {
		t.Fatalf("orders-client's token has three dot-separated segments, want an opaque token: %.20s…", opaque.AccessToken)
	}
	mark := len(op.output())
	first := call(t, "GET", sc.URL+"/orders/1", opaque.AccessToken)
	// On its first opaque token tokengate read the endpoint from the metadata.
	reqs := op.requests(mark)
	if len(reqs) != 2 || !strings.HasPrefix(reqs[0], "GET /.well-known/openid-configuration ") || !strings.HasPrefix(reqs[1], "POST "+introspectionEndpoint+" ") {
		t.Errorf("the provider saw %q on the first opaque token, want the discovery document then the introspection endpoint", reqs)
	}
	if first.status != 200 || up.Count() != 1 {
		t.Fatalf("an opaque token: %d %+v (upstream saw %d)", first.status, first.body, up.Count())
	}
	got := up.Last()
	for name, want := range map[string]string{
		"X-Auth-Client-Id": ordersClient, "X-Auth-Scopes": "orders:read", "Authorization": "Bearer " + opaque.AccessToken,
		// node-oidc-provider's answer for a client_credentials token has no sub.
		"X-Auth-Subject": "",
	} {
		if v := got.Header.Get(name); v != want {
			t.Errorf("the upstream got %s %q, want %q", name, v, want)
		}
	}
	answers := step("opaque token, first use", []string{"ok"}, map[string]float64{"active": 1})
	if len(answers) != 1 || answers[0].Active == nil || !*answers[0].Active || answers[0].Aud != ordersAPI {
		t.Fatalf("the provider's introspection answers: %+v, want one active for %s", answers, ordersAPI)
	}

	// 2. The same token again: from the cache, no further call.
	var hits []time.Duration
	for i := range 4 {
		r := call(t, "GET", fmt.Sprintf("%s/orders/%d", sc.URL, i+2), opaque.AccessToken)
		if r.status != 200 {
			t.Fatalf("the opaque token again (%d): %d %+v", i+2, r.status, r.body)
		}
		hits = append(hits, r.took)
	}
	step("same opaque token ×4 (cache)", []string{"ok", "ok", "ok", "ok"}, nil)

	// 3. A JWT of the same provider for the same resource: the JWKS path, no call.
	jwt, _ := op.token(t, jwtClient, jwtSecret, "orders:read", ordersAPI)
	if h, c := decodeJWT(t, jwt.AccessToken); h["typ"] != "at+jwt" || c["aud"] != ordersAPI || c["client_id"] != jwtClient {
		t.Fatalf("jwt-client's token: header %v claims %v", h, c)
	}
	jwtResult := call(t, "GET", sc.URL+"/orders/10", jwt.AccessToken)
	if jwtResult.status != 200 || up.Last().Header.Get("X-Auth-Subject") != jwtClient {
		t.Fatalf("a JWT of the provider: %d %+v, upstream X-Auth-Subject %q", jwtResult.status, jwtResult.body, up.Last().Header.Get("X-Auth-Subject"))
	}
	step("JWT, same provider and resource", []string{"ok"}, nil)

	// 4. Revocation at the provider: the cached answer holds for at most cacheTTL.
	revoked, _ := op.token(t, ordersClient, ordersSecret, "orders:read", ordersAPI)
	introspected := time.Now()
	if r := call(t, "GET", sc.URL+"/orders/20", revoked.AccessToken); r.status != 200 {
		t.Fatalf("the token to revoke, before: %d %+v", r.status, r.body)
	}
	step("token to revoke, first use", []string{"ok"}, map[string]float64{"active": 1})
	op.revoke(t, meta.RevocationEndpoint, ordersClient, ordersSecret, revoked.AccessToken)
	revokedAt := time.Now()
	right := call(t, "GET", sc.URL+"/orders/21", revoked.AccessToken)
	if right.status != 200 {
		t.Fatalf("the revoked token right after the revocation (%s after its introspection, cacheTTL %s): %d %+v, want 200 from the cache",
			time.Since(introspected).Round(time.Millisecond), introspectionCacheTTL, right.status, right.body)
	}
	step("revoked, right after (cache)", []string{"ok"}, nil)
	var refused result
	var refusedAt time.Time
	polls := 0
	const maxPolls = 500 // Eventually sleeps 20 ms between polls: about 10 s
	e2etest.Eventually(t, introspectionCacheTTL+2*revocationMargin, "the revoked token to be refused", func() bool {
		if polls++; polls > maxPolls {
			t.Fatalf("the revoked token still allowed after %d polls", maxPolls)
		}
		r := call(t, "GET", sc.URL+"/orders/22", revoked.AccessToken)
		switch r.status {
		case 200:
			return false
		case 401:
			refused, refusedAt = r, time.Now()
			return true
		}
		t.Fatalf("the revoked token, poll %d: %d %+v", polls, r.status, r.body)
		return false
	})
	delay := refusedAt.Sub(revokedAt)
	expectInvalidToken(t, refused, "the access token is not active", "the revoked token")
	if delay > introspectionCacheTTL+revocationMargin {
		t.Errorf("the revoked token was first refused %s after the revocation, want at most cacheTTL %s + %s", delay, introspectionCacheTTL, revocationMargin)
	}
	reasons := append(slices.Repeat([]string{"ok"}, polls-1), "inactive")
	slices.Sort(reasons)
	answers = step(fmt.Sprintf("revoked, polled until refused (%d polls)", polls), reasons, map[string]float64{"inactive": 1})
	if len(answers) != 1 || answers[0].Active == nil || *answers[0].Active {
		t.Errorf("the provider's answers for the revoked token: %+v, want one active:false", answers)
	}
	if r := call(t, "GET", sc.URL+"/orders/23", revoked.AccessToken); r.status != 401 {
		t.Errorf("the revoked token once more: %d", r.status)
	}
	step("revoked, once more (negative cache)", []string{"inactive"}, nil)

	// 5. An opaque token for another resource: the provider says active, for its
	// audience; tokengate's audience check refuses it.
	upstreamBefore := up.Count()
	reports, _ := op.token(t, ordersClient, ordersSecret, "orders:read", reportsAPI)
	other := call(t, "GET", sc.URL+"/orders/30", reports.AccessToken)
	expectInvalidToken(t, other, "the access token is not meant for this API", "an opaque token for "+reportsAPI)
	answers = step("opaque token for "+reportsAPI, []string{"audience"}, map[string]float64{"active": 1})
	if len(answers) != 1 || answers[0].Active == nil || !*answers[0].Active || answers[0].Aud != reportsAPI {
		t.Errorf("the provider's answers for the %s token: %+v, want one active for that audience", reportsAPI, answers)
	}
	if up.Count() != upstreamBefore {
		t.Fatal("a token for another audience reached the upstream")
	}

	// 6. The provider killed: a token obtained before, never introspected, is 503 and
	// never reaches the API; each attempt is a failed call (failures are not cached).
	fresh, _ := op.token(t, ordersClient, ordersSecret, "orders:read", ordersAPI)
	downAt := time.Now()
	op.kill(t)
	var unavailable []result
	for i := range 3 {
		r := call(t, "GET", fmt.Sprintf("%s/orders/%d", sc.URL, 40+i), fresh.AccessToken)
		if r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Fatalf("with the provider killed, attempt %d: %d Retry-After %q %+v, want 503 with Retry-After", i+1, r.status, r.header.Get("Retry-After"), r.body)
		}
		unavailable = append(unavailable, r)
	}
	if up.Count() != upstreamBefore {
		t.Fatalf("with the provider killed the upstream saw %d requests", up.Count()-upstreamBefore)
	}
	step("provider killed: fresh opaque token ×3", slices.Repeat([]string{"introspection_unavailable"}, 3), map[string]float64{"error": 3})
	// The JWT needs no introspection: still allowed with the keys it holds.
	if r := call(t, "GET", sc.URL+"/orders/50", jwt.AccessToken); r.status != 200 {
		t.Errorf("the JWT with the provider killed: %d %+v", r.status, r.body)
	}
	step("provider killed: the JWT", []string{"ok"}, nil)

	// 7. The provider back on the same port, with its keys and stored tokens: the same
	// token is allowed at once.
	op.restart(t)
	down := time.Since(downAt)
	back := call(t, "GET", sc.URL+"/orders/60", fresh.AccessToken)
	if back.status != 200 || up.Count() != upstreamBefore+2 {
		t.Fatalf("the fresh token with the provider back: %d %+v (upstream saw %d more)", back.status, back.body, up.Count()-upstreamBefore)
	}
	step("provider restarted: the same fresh token", []string{"ok"}, map[string]float64{"active": 1})

	m := sc.Metrics(t)
	t.Logf("opaque tokens, introspected (cacheTTL %s):\n  %s", introspectionCacheTTL, strings.Join(rows, "\n  "))
	t.Logf("totals: tokengate_introspection_requests_total active=%v inactive=%v error=%v; the provider answered %d introspection requests, all as %s",
		introspectionCalls(m, "active"), introspectionCalls(m, "inactive"), introspectionCalls(m, "error"), len(op.introspections(0)), apiClient)
	t.Logf("revocation: first 401 (inactive) %s after the revocation, %s after the token's introspection, after %d polls; the request right after the revocation was 200 in %s",
		delay.Round(time.Millisecond), refusedAt.Sub(introspected).Round(time.Millisecond), polls, right.took.Round(time.Microsecond))
	t.Logf("first opaque token: the provider saw %q", reqs)
	t.Logf("timings: first opaque request (endpoint discovery + introspection) %s; cache hits %v; JWT %s; 503s with the provider killed %v (body %+v, Retry-After %s); provider killed to READY again %s; after the restart %s; the other resource → %d %s; test %s",
		first.took.Round(time.Microsecond), roundAll(hits), jwtResult.took.Round(time.Microsecond), roundAll(tooks(unavailable)), unavailable[0].body,
		unavailable[0].header.Get("Retry-After"), down.Round(time.Millisecond), back.took.Round(time.Microsecond), other.status, other.body.Error, time.Since(began).Round(time.Millisecond))
}

// introspectionCalls is tokengate_introspection_requests_total for one result.
func introspectionCalls(m map[string]float64, result string) float64 {
	return e2etest.Sum(m, "tokengate_introspection_requests_total", `result="`+result+`"`)
}

// opaqueProvider is a running opaque-provider.mjs with what it needs to start again
// on the same port with the same keys and stored tokens.
type opaqueProvider struct {
	*provider
	args []string
}

// startOpaqueProvider starts opaque-provider.mjs with a fresh signing key and state
// file; it is stopped when the test ends.
func startOpaqueProvider(t *testing.T) *opaqueProvider {
	t.Helper()
	dir := t.TempDir()
	keysFile, stateFile := filepath.Join(dir, "keys.json"), filepath.Join(dir, "state.json")
	b, _ := json.Marshal(map[string]any{"keys": []any{privateJWK(newKey(t, "opaque"))}})
	if err := os.WriteFile(keysFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	op := &opaqueProvider{}
	op.provider = startNodeScript(t, opaqueProviderScript, func(port string) []string {
		op.args = []string{"--port", port, "--keys", keysFile, "--state", stateFile}
		return op.args
	})
	return op
}

// kill ends the provider with SIGKILL, as a crash does, and returns once it is gone.
func (op *opaqueProvider) kill(t *testing.T) {
	t.Helper()
	op.mu.Lock()
	cmd, done := op.cmd, op.done
	op.cmd = nil
	op.mu.Unlock()
	if cmd == nil {
		t.Fatal("the provider is not running")
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the provider (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
	}
}

// restart starts the provider again on its port; the port was just released, so a
// failed start is retried for a while.
func (op *opaqueProvider) restart(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := op.startScript(opaqueProviderScript, op.args...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start again: %v\n%s", opaqueProviderScript, err, strings.Join(op.output(), "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// providerMetadata holds the endpoints of the provider's discovery document the test
// reads.
type providerMetadata struct {
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
}

func (op *opaqueProvider) metadata(t *testing.T) providerMetadata {
	t.Helper()
	var m providerMetadata
	getJSON(t, op.Issuer+"/.well-known/openid-configuration", &m)
	return m
}

// revoke revokes token at the provider's revocation endpoint (RFC 7009), authenticated
// as the client it was issued to.
func (op *opaqueProvider) revoke(t *testing.T, endpoint, clientID, secret, token string) {
	t.Helper()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, _ := http.NewRequest("POST", endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != 200 {
		t.Fatalf("revocation endpoint: %s: %s", resp.Status, body)
	}
}

// introspectionAnswer is an `INTROSPECT` line of opaque-provider.mjs: who asked, and
// what it answered.
type introspectionAnswer struct {
	Client   string `json:"client"`
	Active   *bool  `json:"active"`
	Aud      string `json:"aud"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
}

// introspections are the provider's introspection answers from output line from on.
func (op *opaqueProvider) introspections(from int) []introspectionAnswer {
	var out []introspectionAnswer
	for _, l := range op.output()[from:] {
		rest, ok := strings.CutPrefix(l, "INTROSPECT ")
		if !ok {
			continue
		}
		var a introspectionAnswer
		if err := json.Unmarshal([]byte(rest), &a); err != nil {
			a.Client = "unparsable: " + rest
		}
		out = append(out, a)
	}
	return out
}

// tally is reasons as "reason×count", in order of first appearance.
func tally(reasons []string) string {
	var order []string
	n := map[string]int{}
	for _, r := range reasons {
		if n[r] == 0 {
			order = append(order, r)
		}
		n[r]++
	}
	var b strings.Builder
	for i, r := range order {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s×%d", r, n[r])
	}
	return b.String()
}

func tooks(rs []result) []time.Duration {
	var out []time.Duration
	for _, r := range rs {
		out = append(out, r.took)
	}
	return out
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Microsecond)
	}
	return out
}
