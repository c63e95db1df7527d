package middleware

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// These tests hold the route table to what it matches and what it refuses, reading by
// reading: routeTable.match is the narrowest API that shows which routes a request is
// decided on (Gate.Decide then applies each one's policy, gate_test.go and
// readings_test.go show that part).

// compileTable compiles routes given as patterns alone: what is asserted is which of
// them a request matches, not their policies.
func compileTable(t *testing.T, style PathStyle, patterns ...string) *routeTable {
	t.Helper()
	routes := make([]Route, len(patterns))
	for i, p := range patterns {
		routes[i] = Route{Match: p}
	}
	tab, errs := compileRoutes(routes, style)
	if len(errs) > 0 {
		t.Fatalf("compileRoutes: %v", errors.Join(errs...))
	}
	return tab
}

// newRequest is a request as net/http's server reads it (httptest.NewRequest parses the
// request line with http.ReadRequest), on host, or on example.com when host is "".
func newRequest(method, target, host string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if host != "" {
		r.Host = host
	}
	return r
}

// matchedPatterns matches r on every copy of the table and returns the Match of each
// route matched, the primary's first; every copy must agree.
func matchedPatterns(t *testing.T, tab *routeTable, r *http.Request) ([]string, error) {
	t.Helper()
	var first []string
	var why error
	for sh := range muxCopies {
		var m matched
		tab.match(sh, r, &m)
		var got []string
		for _, rt := range m.all() {
			got = append(got, rt.Match)
		}
		if sh == 0 {
			first, why = got, m.why
			continue
		}
		if !slices.Equal(got, first) || m.why != why {
			t.Fatalf("copy %d matches %q (%v), copy 0 %q (%v)", sh, got, m.why, first, why)
		}
	}
	return first, why
}

type matchCase struct {
	name           string
	method, target string
	host           string
	want           []string // the routes matched, the primary's first; nil: none
}

func (c matchCase) check(t *testing.T, tab *routeTable) {
	t.Helper()
	got, why := matchedPatterns(t, tab, newRequest(c.method, c.target, c.host))
	if !slices.Equal(got, c.want) {
		t.Errorf("%s %s (Host %q) matches %q (%v), want %q", c.method, c.target, c.host, got, why, c.want)
	}
}

// An API that ignores a trailing slash serves /orders from a route written /orders/
// (Express, ASP.NET Core, Spring before 6): the request must meet that route's policy
// too. A subtree that only the added slash reaches (/items/ for /items/1) is not such
// a route.
func TestSlashAddedReading(t *testing.T) {
	toggling := []PathStyle{PathsStrict, PathsExpress, PathsServlet}
	for _, tc := range []struct {
		name     string
		patterns []string
		cases    []matchCase
	}{
		{
			// Patterns without method or host: their path starts the pattern.
			name:     "patterns that start with their path",
			patterns: []string{"/orders", "/orders/{$}"},
			cases: []matchCase{
				{name: "slash added", method: "GET", target: "/orders", want: []string{"/orders", "/orders/{$}"}},
				{name: "slash removed", method: "GET", target: "/orders/", want: []string{"/orders/{$}", "/orders"}},
			},
		},
		{
			name:     "patterns with a method",
			patterns: []string{"GET /items", "GET /items/", "GET /items/{id}", "GET /a/b/"},
			cases: []matchCase{
				{name: "slash added reaches the subtree's own path", method: "GET", target: "/items", want: []string{"GET /items", "GET /items/"}},
				// GET /a/b/ makes three-segment paths with a slash added worth a look;
				// /items/1/ then falls in the subtree GET /items/, two segments: not a
				// route an API serves /items/1 from.
				{name: "a subtree is not a reading of what is under it", method: "GET", target: "/items/1", want: []string{"GET /items/{id}"}},
			},
		},
		{
			name:     "a final wildcard",
			patterns: []string{"GET /files", "GET /files/{path...}"},
			cases: []matchCase{
				{name: "slash added", method: "GET", target: "/files", want: []string{"GET /files", "GET /files/{path...}"}},
				{name: "under it", method: "GET", target: "/files/a", want: []string{"GET /files/{path...}"}},
			},
		},
	} {
		for _, style := range toggling {
			tab := compileTable(t, style, tc.patterns...)
			for _, c := range tc.cases {
				t.Run(string(style)+"/"+tc.name+"/"+c.name, func(t *testing.T) { c.check(t, tab) })
			}
		}
		// An API that routes exactly (Go, chi, Gin) redirects instead: no reading.
		tab := compileTable(t, PathsExact, tc.patterns...)
		c := tc.cases[0]
		c.want = c.want[:1]
		t.Run("exact/"+tc.name+"/"+c.name, func(t *testing.T) { c.check(t, tab) })
	}
}

// An API that matches paths in any case serves GET /admin/1 from a route written
// GET /Admin/{x}: strict and express match the path in lower case against the patterns
// in lower case, whatever case the patterns are written in.
func TestCaseFoldedReadings(t *testing.T) {
	for _, tc := range []struct {
		style    PathStyle
		patterns []string
		matchCase
	}{
		// Every pattern has upper case, so there is no pattern that folding leaves
		// alone; the folded table is still needed.
		{PathsStrict, []string{"GET /Admin/{x}", "GET /{Page...}"}, matchCase{name: "every pattern in upper case", method: "GET", target: "/admin/1", want: []string{"GET /{Page...}", "GET /Admin/{x}"}}},
		{PathsExpress, []string{"GET /Admin/{x}", "GET /{Page...}"}, matchCase{name: "every pattern in upper case", method: "GET", target: "/admin/1", want: []string{"GET /Admin/{x}"}}},
		// A pattern that starts with its path is folded too.
		{PathsStrict, []string{"/Admin/", "/"}, matchCase{name: "a pattern without method", method: "GET", target: "/admin/x", want: []string{"/", "/Admin/"}}},
		{PathsExpress, []string{"/Admin/", "/"}, matchCase{name: "a pattern without method", method: "GET", target: "/admin/x", want: []string{"/Admin/"}}},
		{PathsStrict, []string{"/Admin/", "/"}, matchCase{name: "the path in upper case", method: "GET", target: "/ADMIN/x", want: []string{"/", "/Admin/"}}},
		// Exact and servlet APIs tell case apart.
		{PathsExact, []string{"/Admin/", "/"}, matchCase{name: "exact", method: "GET", target: "/admin/x", want: []string{"/"}}},
		{PathsServlet, []string{"/Admin/", "/"}, matchCase{name: "servlet", method: "GET", target: "/admin/x", want: []string{"/"}}},
	} {
		t.Run(string(tc.style)+"/"+tc.name, func(t *testing.T) { tc.check(t, compileTable(t, tc.style, tc.patterns...)) })
	}
}

// Starlette, werkzeug and ASP.NET Core read a method in upper case: a request must meet
// the policy of the route its method in upper case matches, whichever lower-case
// letters it has (here only one, an end of a-z).
func TestUpperCaseMethodReading(t *testing.T) {
	tab := compileTable(t, PathsExact, "PATCH /orders/{id}", "SIZE /orders/{id}", "/")
	for _, c := range []matchCase{
		{name: "a", method: "PaTCH", target: "/orders/1", want: []string{"/", "PATCH /orders/{id}"}},
		{name: "z", method: "SIzE", target: "/orders/1", want: []string{"/", "SIZE /orders/{id}"}},
		{name: "upper case already", method: "PATCH", target: "/orders/1", want: []string{"PATCH /orders/{id}"}},
	} {
		t.Run(c.name, func(t *testing.T) { c.check(t, tab) })
	}
}

// An API behind a virtual host reads the host in any case and with a trailing dot (RFC
// 3986 §3.2.2, RFC 1034 §3.1): a request to ADMIN.example.com. must be decided on the
// route of admin.example.com, which ServeMux alone would not match.
func TestHostReadings(t *testing.T) {
	tab := compileTable(t, PathsStrict, "admin.example.com/", "zone.example.com/", "intranet/", "/")
	for _, c := range []matchCase{
		{name: "as written", host: "admin.example.com", want: []string{"admin.example.com/"}},
		{name: "with a port", host: "admin.example.com:8443", want: []string{"admin.example.com/"}},
		{name: "in upper case", host: "ADMIN.EXAMPLE.COM", want: []string{"admin.example.com/"}},
		{name: "only an A in upper case", host: "Admin.example.com", want: []string{"admin.example.com/"}},
		{name: "only a Z in upper case", host: "Zone.example.com", want: []string{"zone.example.com/"}},
		{name: "one label, no character below A", host: "Intranet", want: []string{"intranet/"}},
		{name: "one label in upper case", host: "INTRANET", want: []string{"intranet/"}},
		{name: "a trailing dot", host: "admin.example.com.", want: []string{"admin.example.com/"}},
		{name: "a trailing dot and a port", host: "admin.example.com.:8443", want: []string{"admin.example.com/"}},
		{name: "all of it", host: "ADMIN.Example.COM.:8443", want: []string{"admin.example.com/"}},
		{name: "another host", host: "www.example.com", want: []string{"/"}},
		{name: "a longer name", host: "admin.example.com.evil", want: []string{"/"}},
	} {
		c.method, c.target = "GET", "/x"
		t.Run(c.name, func(t *testing.T) { c.check(t, tab) })
	}
}

// Each route that a request's readings match is decided on once, and every one of
// them is, however many readings reach it.
func TestReadingsRoutesOnce(t *testing.T) {
	tab := compileTable(t, PathsStrict, "/", "GET /orders/{id}/", "GET /orders/{id}", "/users/{id}")
	for _, c := range []matchCase{
		// As sent: / (primary); in lower case: GET /orders/{id}/; as sent without the
		// slash: / again; in lower case without it: GET /orders/{id}.
		{name: "two other routes", method: "GET", target: "/Orders/1/", want: []string{"/", "GET /orders/{id}/", "GET /orders/{id}"}},
		// get and GET read /users/1 (in lower case) alike.
		{name: "one route, two readings", method: "get", target: "/Users/1", want: []string{"/", "/users/{id}"}},
		{name: "one reading", method: "GET", target: "/users/1", want: []string{"/users/{id}"}},
		{name: "none", method: "GET", target: "/users/1/x", want: []string{"/"}},
	} {
		t.Run(c.name, func(t *testing.T) { c.check(t, tab) })
	}
}

// A request the API may route differently from the route table matches no route, and
// the logged cause says why; every style refuses the same paths, save ';'.
func TestNoRouteCauses(t *testing.T) {
	patterns := []string{"GET /orders/{id}", "GET /orders/{id}/refund", "GET /public/", "GET /admin/{x}"}
	type row struct {
		method, target string
		why            error  // nil: matched
		route          string // the primary route when matched
	}
	refused := []row{
		// Encoded slashes and backslashes, however spelt: /orders/1%2Frefund is
		// GET /orders/{id} to ServeMux and GET /orders/{id}/refund to an API that
		// decodes first.
		{"GET", "/orders/1%2Frefund", errAmbiguousPath, ""},
		{"GET", "/orders/1%2frefund", errAmbiguousPath, ""},
		{"GET", "/orders/1%5Crefund", errAmbiguousPath, ""},
		{"GET", "/orders/1%5crefund", errAmbiguousPath, ""},
		{"GET", "/orders/1\\refund", errAmbiguousPath, ""},
		// Dot segments, however spelt: an API that decodes or drops ";parameters"
		// before resolving them serves /orders/1.
		{"GET", "/public/%2e%2e/orders/1", errAmbiguousPath, ""},
		{"GET", "/public/%2E/x", errAmbiguousPath, ""},
		{"GET", "/public/..;/orders/1", errAmbiguousPath, ""},
		{"GET", "/public/.;x/orders/1", errAmbiguousPath, ""},
		{"GET", "/public/..;x=1/orders/1", errAmbiguousPath, ""},
		// A segment that is empty once its ";parameters" go: /orders/ to a servlet
		// container.
		{"GET", "/orders/;x", errAmbiguousPath, ""},
		{"GET", "/orders/;", errAmbiguousPath, ""},
		{"GET", "/orders//1", errAmbiguousPath, ""},
		{"GET", "/orders/1#x", errFragment, ""},
		{"CONNECT", "/orders/1", errConnect, ""},
		{"GET", "/other", errNoPattern, ""},
	}
	plain := []row{
		{"GET", "/orders/1", nil, "GET /orders/{id}"},
		// Escapes that are no separator: a space, '%', '?', '<', '['. The %41 (A),
		// which decoding loses, makes net/http keep the path as sent (URL.RawPath),
		// where the escapes are looked at.
		{"GET", "/orders/%41%20b", nil, "GET /orders/{id}"},
		{"GET", "/orders/%41%25b", nil, "GET /orders/{id}"},
		{"GET", "/orders/%41%3Fb", nil, "GET /orders/{id}"},
		{"GET", "/orders/%41%3Cb", nil, "GET /orders/{id}"},
		{"GET", "/orders/%41%5Bb", nil, "GET /orders/{id}"},
		// Dots that are no dot segment.
		{"GET", "/orders/..x", nil, "GET /orders/{id}"},
		{"GET", "/orders/x.", nil, "GET /orders/{id}"},
		{"GET", "/public/", nil, "GET /public/"},
	}
	for _, tc := range []struct {
		style PathStyle
		rows  []row
	}{
		{PathsStrict, slices.Concat(refused, plain, []row{
			{"GET", "/orders/1;x", errSemicolon, ""},
			{"GET", "/orders;x/1", errSemicolon, ""},
		})},
		{PathsExact, slices.Concat(refused, plain, []row{
			{"GET", "/orders/1;x", nil, "GET /orders/{id}"},
		})},
		{PathsExpress, slices.Concat(refused, plain, []row{
			{"GET", "/orders/1;x", nil, "GET /orders/{id}"},
		})},
		{PathsServlet, slices.Concat(refused, plain, []row{
			{"GET", "/orders/1;x", nil, "GET /orders/{id}"},
			{"GET", "/orders;jsessionid=1/1", nil, "GET /orders/{id}"},
		})},
	} {
		tab := compileTable(t, tc.style, patterns...)
		for _, r := range tc.rows {
			t.Run(string(tc.style)+"/"+r.method+" "+r.target, func(t *testing.T) {
				var m matched
				tab.match(0, newRequest(r.method, r.target, ""), &m)
				route := ""
				if m.primary != nil {
					route = m.primary.Match
				}
				if m.why != r.why || route != r.route {
					t.Fatalf("matches %q (%v), want %q (%v)", route, m.why, r.route, r.why)
				}
			})
		}
	}
}

// A route that conflicts with another is refused with ServeMux's reason, without the
// source locations ServeMux adds (they are tokengate's, nothing to its user); one that
// only case tells from another names that other, to an API that matches in any case.
func TestRouteConflictErrors(t *testing.T) {
	_, errs := compileRoutes([]Route{{Match: "GET /orders/{id}"}, {Match: "GET /orders/{x}"}}, PathsStrict)
	var fe *FieldError
	if len(errs) != 1 || !errors.As(errs[0], &fe) || fe.Field != "Routes[1].Match" {
		t.Fatalf("%v", errs)
	}
	first, _, _ := strings.Cut(fe.Problem, "\n")
	if want := `pattern "GET /orders/{x}" conflicts with pattern "GET /orders/{id}":`; first != want {
		t.Fatalf("problem %q, want it to start with %q", fe.Problem, want)
	}

	_, errs = compileRoutes([]Route{{Match: "GET /Orders/{id}"}, {Match: "POST /orders"}, {Match: "GET /orders/{id}", Scopes: []string{"x"}}}, PathsExpress)
	if len(errs) != 1 || !errors.As(errs[0], &fe) || fe.Field != "Routes[2].Match" {
		t.Fatalf("%v", errs)
	}
	if want := `"GET /orders/{id}" is the same route as another (Routes[0], "GET /Orders/{id}") to an API that matches paths in any case`; !strings.HasPrefix(fe.Problem, want) {
		t.Fatalf("problem %q, want it to start with %q", fe.Problem, want)
	}
}

// A reading that matches no route is cheap in every table it is matched in: without
// the sentinel "/" of addSentinels, ServeMux lists the methods of the path for a 405 it
// never sends, several allocations on each such reading. The folded table (of an API
// that matches in any case) must have it as the table of the paths as sent does.
func TestFoldedTableMissesCheaply(t *testing.T) {
	// GET /Admin/{x}/ makes the folded table one of its own.
	tab := compileTable(t, PathsStrict, "GET /orders/{id}", "GET /Admin/{x}/")
	if tab.folded == tab.muxes {
		t.Fatal("no folded table")
	}
	for _, path := range []string{"/orders/1/", "/other/1"} {
		r := newRequest("GET", path, "")
		for i := range muxCopies {
			cost := func(mux *http.ServeMux) float64 {
				return testing.AllocsPerRun(50, func() {
					if h, pattern := mux.Handler(r); pattern != "/" {
						t.Fatalf("%s matches %q (%T), not the sentinel", path, pattern, h)
					}
				})
			}
			if sent, folded := cost(tab.muxes[i]), cost(tab.folded[i]); folded > sent {
				t.Errorf("copy %d: %s costs the folded table %v allocations, the table as sent %v", i, path, folded, sent)
			}
		}
	}
}
