package middleware

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// fuzzRouteTable is a realistic route table: exact, prefix, {$}, {id} and {rest...}
// patterns, with and without method and host, public, scoped, any-token and shadow.
var fuzzRouteTable = []Route{
	{Match: "GET /healthz", Public: true},
	{Match: "GET /{$}", Public: true},
	{Match: "GET /public/", Public: true},
	{Match: "GET /docs/{page...}", Public: true},
	{Match: "GET /orders/{id}", Scopes: []string{"orders:read"}},
	{Match: "GET /orders/{id}/items/{item}", Scopes: []string{"orders:read"}},
	{Match: "POST /orders", AnyScopes: []string{"orders:write", "orders:admin"}},
	{Match: "DELETE /orders/{id}", Scopes: []string{"orders:read", "orders:admin"}},
	{Match: "PUT  /users/{id}/profile", Scopes: []string{}},
	{Match: "/admin/", Scopes: []string{"admin"}},
	{Match: "admin.example.com/", Scopes: []string{"admin"}},
	{Match: "GET api.example.com/v2/{id}", Scopes: []string{"orders:read"}},
	{Match: "/legacy/", Scopes: []string{"legacy"}, Shadow: true},
}

// FuzzRoutes sends requests with odd methods, request targets (encoded slashes and
// dots, NUL, //, /../, ;, bytes that are not UTF-8, long paths, absolute form) and
// hosts, parsed as net/http's server parses them, through a Gate with fuzzRouteTable:
// tok picks no token or one of two, enc percent-encodes the dots of the path, style the
// upstreamPaths style. What must hold:
//
//   - the decision is the same twice, and every copy of the route table's mux matches
//     the same route;
//   - the route label is a configured pattern or NoRoute, in the Decision and in every
//     series of tokengate_decisions_total;
//   - no route means 403 no_route (fail closed), and only then;
//   - a public decision is on a public route, an allowed one on a route whose scopes
//     the token has, a shadow_denied one on a shadow route;
//   - no bypass: a request the Gate forwards is one it would also forward as the API
//     may read it (apiView: the host in lower case without port or trailing dot, the
//     path decoded, each segment's ";parameters" dropped where the style says servlet
//     containers may read it, and dot segments removed, as RFC 3986 normalisation
//     does; then apiReadings: in another case, with or without a trailing slash, the
//     method in upper case, as the style says). "/public/../orders/1" must not pass as
//     public, however it is spelt, nor "/ORDERS/1" as anything but GET /orders/{id}.
func FuzzRoutes(f *testing.F) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience("https://orders.example.com"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(as.Close)
	newGate := func(style PathStyle, keys KeySource) *Gate {
		g, err := New(context.Background(), Config{
			Realm: "orders-api",
			Issuers: []Issuer{{
				Config:    jwks.Config{Issuer: as.Issuer},
				Audiences: []string{"https://orders.example.com"},
			}},
			Routes:    fuzzRouteTable,
			PathStyle: style,
		}, Options{Registerer: prometheus.NewPedanticRegistry(), Logger: slog.New(slog.DiscardHandler), KeySource: keys})
		if err != nil {
			f.Fatal(err)
		}
		return g
	}
	g := newGate(PathsStrict, nil)
	f.Cleanup(g.Close)
	// gates decide by the fuzzer's choice of style; exact decides each reading of the
	// bypass check on its own. All share g's keys.
	gates := map[PathStyle]*Gate{PathsStrict: g}
	for _, st := range pathStyles[1:] {
		gates[st] = newGate(st, g.KeySets())
	}
	exact := gates[PathsExact]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.WaitReady(ctx); err != nil {
		f.Fatal(err)
	}

	// Tokens by the fuzzer's choice: none, a reader, an administrator; valid for a day,
	// so that a long local run keeps reaching the allowed paths.
	exp := time.Now().Add(24 * time.Hour).Unix()
	tokens := []struct {
		header string
		scopes []string
	}{
		{"", nil},
		{"Bearer " + as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": exp}), []string{"orders:read"}},
		{"Bearer " + as.MustMint(jwkstest.Claims{"scope": "orders:read orders:admin admin", "exp": exp}), []string{"orders:read", "orders:admin", "admin"}},
	}
	labels := map[string]bool{NoRoute: true}
	policy := map[string]Route{}
	for _, r := range fuzzRouteTable {
		labels[canonicalPattern(r.Match)] = true
		policy[canonicalPattern(r.Match)] = r
	}

	for _, s := range []struct {
		method, target, host string
		token                uint8
	}{
		{"GET", "/healthz", "api.example.com", 0},
		{"HEAD", "/healthz", "api.example.com", 0},
		{"get", "/healthz", "api.example.com", 0},
		{"GET", "/healthz;x", "api.example.com", 0},
		{"GET", "/", "", 0},
		{"GET", "/public/x", "api.example.com", 0},
		{"GET", "/public/a;b=c/x", "api.example.com", 0},
		{"GET", "/public/../orders/1", "api.example.com", 0},
		{"GET", "/public/%2e/x", "api.example.com", 0},
		{"GET", "/public/%2E/orders/1", "api.example.com", 0},
		{"GET", "/legacy/x/%2e/orders", "api.example.com", 0},
		{"GET", "/public/x", "admin.example.com", 0},
		{"GET", "/public/x", "admin.example.com:8443", 0},
		{"GET", "http://admin.example.com/public/x", "api.example.com", 0},
		{"GET", "/docs/a/b", "api.example.com", 0},
		{"GET", "/docs/a/../../admin/x", "api.example.com", 0},
		{"GET", "/docs/%00", "api.example.com", 0},
		{"GET", "/docs/\xff\xfe", "api.example.com", 0},
		{"GET", "/orders/1", "api.example.com", 1},
		{"GET", "/orders/1;x=y", "api.example.com", 1},
		{"GET", "/orders/1%2Frefund", "api.example.com", 1},
		{"GET", "/orders/1%5Crefund", "api.example.com", 1},
		{"GET", "/orders//1", "api.example.com", 1},
		{"GET", "/orders/1/items/2", "api.example.com", 1},
		{"POST", "/orders", "api.example.com", 1},
		{"POST", "/orders", "api.example.com", 2},
		{"DELETE", "/orders/7", "api.example.com", 2},
		{"PUT", "/users/1/profile", "api.example.com", 1},
		{"GET", "/users/1/profile", "api.example.com", 1},
		{"GET", "/admin", "api.example.com", 2},
		{"GET", "/admin/x", "api.example.com", 2},
		{"GET", "/v2/1", "api.example.com", 1},
		{"GET", "/v2/1", "api.example.com:443", 0},
		{"GET", "/legacy/x", "api.example.com", 0},
		{"GET", "/legacy/../orders/1", "api.example.com", 0},
		{"OPTIONS", "*", "api.example.com", 0},
		{"CONNECT", "api.example.com:443", "api.example.com", 0},
		{"GET", "/" + strings.Repeat("a/", 2000), "api.example.com", 1},
	} {
		for st := range pathStyles {
			f.Add(s.method, s.target, s.host, s.token, uint8(0), uint8(st))
		}
	}
	// The forms of the review's finding 2, in every style.
	for _, s := range []struct{ method, target string }{
		{"GET", "/ORDERS/1"}, {"GET", "/orders/1/"}, {"POST", "/Orders"}, {"get", "/orders/1"}, {"GET", "/Orders/1/items/2/"},
		{"GET", "/orders;x/1"}, {"GET", "/orders;/1"}, {"GET", "/orders/1;jsessionid=a"}, {"DELETE", "/ORDERS/7/"},
		{"GET", "/ADMIN/x"}, {"GET", "/Public/x"}, {"GET", "/public/x;y/../z"}, {"GET", "/DOCS/a/"},
		{"get", "/v2/1"}, {"delete", "/orders/7"}, {"GET", "/public/x#/../orders/1"}, {"GET", "/orders/1#x"},
	} {
		for st := range pathStyles {
			f.Add(s.method, s.target, "api.example.com", uint8(1), uint8(0), uint8(st))
			f.Add(s.method, s.target, "api.example.com", uint8(0), uint8(0), uint8(st))
		}
	}
	f.Add("GET", "/public/./x", "api.example.com", uint8(0), uint8(1), uint8(0))
	f.Add("GET", "/docs/a.b/./c", "api.example.com", uint8(0), uint8(3), uint8(0))

	f.Fuzz(func(t *testing.T, method, target, host string, tok, enc, styleIndex uint8) {
		style := pathStyles[int(styleIndex)%len(pathStyles)]
		g := gates[style]
		if strings.ContainsAny(method+target+host, "\r\n") {
			return // not one request line and one header
		}
		// enc spells the dots of the path percent-encoded (bit 0), in upper case
		// (bit 1), as a client may to hide a dot segment.
		if enc&1 != 0 {
			p, q, hasQuery := strings.Cut(target, "?")
			p = strings.ReplaceAll(p, ".", map[bool]string{false: "%2e", true: "%2E"}[enc&2 != 0])
			if target = p; hasQuery {
				target += "?" + q
			}
		}
		token := tokens[int(tok)%len(tokens)]
		raw := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n"
		if token.header != "" {
			raw += "Authorization: " + token.header + "\r\n"
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n")))
		if err != nil {
			return // the server answers 400 itself
		}
		what := func() string {
			return method + " " + target + " Host: " + host + " token " + string('0'+rune(int(tok)%len(tokens))) + " upstreamPaths " + string(style)
		}

		d := g.Decide(r)
		again := g.Decide(r)
		if d.Outcome != again.Outcome || d.Reason != again.Reason || d.Route != again.Route || d.Public != again.Public || d.Status != again.Status || d.Scope != again.Scope {
			t.Fatalf("%s: %s/%s/%q, then %s/%s/%q", what(), d.Outcome, d.Reason, d.Route, again.Outcome, again.Reason, again.Route)
		}
		var first matched
		g.routes.match(0, r, &first)
		for sh := 1; sh < muxCopies; sh++ {
			var m matched
			g.routes.match(sh, r, &m)
			if m.primary != first.primary || m.n != first.n || m.others != first.others {
				t.Fatalf("%s: mux copy %d matches %v, copy 0 %v", what(), sh, m.all(), first.all())
			}
		}

		if !labels[d.Route] {
			t.Fatalf("%s: route label %q is not a configured pattern", what(), d.Route)
		}
		checkRouteLabels(t, g, labels)

		if (d.Route == NoRoute) != (d.Reason == ReasonNoRoute) {
			t.Fatalf("%s: route %q with reason %s", what(), d.Route, d.Reason)
		}
		if d.Route == NoRoute && (d.Outcome != DecisionDenied || d.Status != http.StatusForbidden || d.Err == nil) {
			t.Fatalf("%s: no route, yet %s %d (%v)", what(), d.Outcome, d.Status, d.Err)
		}
		rt := policy[d.Route]
		switch {
		case d.Public && !rt.Public:
			t.Fatalf("%s: public on %q, which is not a public route", what(), d.Route)
		case d.Outcome == DecisionShadowDenied && !rt.Shadow:
			t.Fatalf("%s: shadow_denied on %q, which is not a shadow route", what(), d.Route)
		case d.Allowed() && !d.Public && (token.header == "" || d.Claims == nil || !grants(token.scopes, rt.Scopes, rt.AnyScopes)):
			t.Fatalf("%s: allowed on %q without a token that has its scopes", what(), d.Route)
		case !d.Allowed() && d.Err == nil:
			t.Fatalf("%s: %s without an error", what(), d.Outcome)
		}
		if !d.Forward() {
			return
		}

		// The bypass check: however the API reads the request (its host and path
		// normalised by apiView, then as the style says it reads paths), the route
		// that reading matches on its own must be one whose policy the request meets.
		apiHost, apiPath := apiView(r, style == PathsServlet || style == PathsStrict)
		for _, v := range apiReadings(style, r.Method, apiPath) {
			r2 := r.Clone(context.Background())
			r2.Method, r2.Host, r2.URL = v.method, apiHost, &url.URL{Path: v.path}
			d2 := exact.Decide(r2)
			if d2.Route == NoRoute || v.slashAdded && segments(d2.Route) < strings.Count(v.path, "/") {
				// No route, or one that only a subtree's prefix reaches: not what an
				// API that ignores a trailing slash serves for the path without it.
				continue
			}
			if !d2.Forward() {
				t.Fatalf("bypass: %s is forwarded (%s on %q), but the API may read it as %s %s%s, which is %s (%s on %q)",
					what(), d.Outcome, d.Route, v.method, apiHost, v.path, d2.Outcome, d2.Reason, d2.Route)
			}
		}
	})
}

type apiReading struct {
	method, path string
	slashAdded   bool
}

// apiReadings are the method and path pairs an API of a style may read a request as,
// computed here independently of the Gate: every style's include the method in upper
// case; strict's are every common one (path in lower case, trailing slash either way),
// express's the path in lower case either way, servlet's the path either way; exact
// reads the path as sent.
func apiReadings(style PathStyle, method, p string) []apiReading {
	methods := []string{method}
	if up := strings.ToUpper(method); up != method {
		methods = append(methods, up)
	}
	paths := []string{p}
	if lp := strings.ToLower(p); lp != p && (style == PathsStrict || style == PathsExpress) {
		paths = append(paths, lp)
	}
	added := map[string]bool{}
	if style != PathsExact {
		for _, q := range paths {
			switch {
			case q == "/":
			case strings.HasSuffix(q, "/"):
				paths = append(paths, strings.TrimSuffix(q, "/"))
			default:
				paths = append(paths, q+"/")
				added[q+"/"] = true
			}
		}
	}
	var out []apiReading
	for _, m := range methods {
		for _, q := range paths {
			out = append(out, apiReading{m, q, added[q]})
		}
	}
	return out
}

// apiView is the host and path of a request as an API may read them: the host without
// port, in lower case (RFC 3986 §3.2.2) and without a trailing dot; the path
// percent-decoded, each segment cut at ';' (path parameters, which servlet containers
// drop before normalising) and its dot segments removed (RFC 3986 §5.2.4), keeping a
// trailing slash.
func apiView(r *http.Request, stripParams bool) (host, p string) {
	host = r.Host
	if strings.Contains(host, ":") {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")

	segs := strings.Split(r.URL.Path, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 && stripParams {
			segs[i] = s[:j]
		}
	}
	p = strings.Join(segs, "/")
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	slash := strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")
	p = path.Clean(p)
	if slash && p != "/" {
		p += "/"
	}
	return host, p
}

// checkRouteLabels fails when a series of tokengate_decisions_total has a label value
// outside its bounded set.
func checkRouteLabels(t *testing.T, g *Gate, labels map[string]bool) {
	t.Helper()
	g.metrics.mu.Lock()
	defer g.metrics.mu.Unlock()
	if limit := len(labels) * int(numOutcomes) * len(Reasons()); len(g.metrics.counters) > limit {
		t.Fatalf("%d decision series, more than %d", len(g.metrics.counters), limit)
	}
	for k := range g.metrics.counters {
		if !labels[k.route] || k.outcome >= numOutcomes || !slices.Contains(Reasons(), k.reason) {
			t.Fatalf("a decision series with labels %+v", k)
		}
	}
}

// grants is the test's own reading of a route's scope policy: every scope of all, and
// one of anyOf when it is not empty.
func grants(have, all, anyOf []string) bool {
	for _, s := range all {
		if !slices.Contains(have, s) {
			return false
		}
	}
	if len(anyOf) == 0 {
		return true
	}
	for _, s := range anyOf {
		if slices.Contains(have, s) {
			return true
		}
	}
	return false
}
