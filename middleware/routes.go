package middleware

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// route is a Route ready for the request path.
type route struct {
	Route
	pattern string // the Match as ServeMux canonicalised it: the route metric label
	scope   string // the scope parameter of an insufficient_scope challenge
	index   int
}

// ServeHTTP makes a route a handler, so that ServeMux can hand it back as the match; it
// is never called.
func (*route) ServeHTTP(http.ResponseWriter, *http.Request) {}

// routeTable matches requests to routes with the standard library's ServeMux: its
// pattern syntax, its precedence (the most specific pattern wins, conflicts are refused)
// and its path cleaning. Only the matching is used, never the mux's own answers: a
// request the mux would redirect (an unclean path, a missing trailing slash) or refuse
// (wrong method) matches no route, and is denied.
//
// ServeMux takes a read lock for every match, and a read lock writes a counter that
// every core shares; so the table holds identical copies of the mux, and a request uses
// the copy of its metrics shard, which stays on one core.
type routeTable struct {
	muxes  [muxCopies]*http.ServeMux
	routes []*route
}

const muxCopies = 8

func compileRoutes(routes []Route) (*routeTable, []error) {
	t := &routeTable{}
	for i := range t.muxes {
		t.muxes[i] = http.NewServeMux()
	}
	var errs []error
	bad := func(i int, field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: fmt.Sprintf("routes[%d].%s", i, field), Problem: fmt.Sprintf(format, args...)})
	}
	for i, r := range routes {
		rt := &route{Route: r, index: i}
		if r.Public && (len(r.Scopes) > 0 || len(r.AnyScopes) > 0) {
			bad(i, "public", "a public route cannot require scopes")
		}
		for j, s := range r.Scopes {
			if !validScope(s) {
				bad(i, fmt.Sprintf("scopes[%d]", j), "%q is not a scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", s)
			}
		}
		for j, s := range r.AnyScopes {
			if !validScope(s) {
				bad(i, fmt.Sprintf("anyScopes[%d]", j), "%q is not a scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", s)
			}
		}
		needed := append([]string(nil), r.Scopes...)
		if len(r.AnyScopes) > 0 {
			// The challenge names what suffices: every all-of scope and the first any-of.
			needed = append(needed, r.AnyScopes[0])
		}
		rt.scope = strings.Join(needed, " ")
		if err := handle(t.muxes[0], r.Match, rt); err != nil {
			bad(i, "match", "%v", err)
			continue
		}
		for _, mux := range t.muxes[1:] {
			mux.Handle(r.Match, rt) // accepted by the first copy, so by every copy
		}
		t.routes = append(t.routes, rt)
	}
	// Ask the mux for the canonical form of each pattern, the route label.
	for _, rt := range t.routes {
		rt.pattern = canonicalPattern(rt.Match)
	}
	return t, errs
}

// handle registers a pattern, turning ServeMux's panics (invalid or conflicting
// patterns) into errors.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	if strings.TrimSpace(pattern) == "" {
		return fmt.Errorf("is empty")
	}
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprint(r)
			// ServeMux's messages name the pattern and, for a conflict, the other one
			// with its source location, which means nothing to a user of tokengate.
			if i := strings.Index(msg, " (registered at "); i >= 0 {
				if j := strings.Index(msg[i:], ")"); j >= 0 {
					msg = msg[:i] + msg[i+j+1:]
				}
			}
			err = fmt.Errorf("%s", strings.TrimPrefix(msg, "http: "))
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// canonicalPattern normalises the spacing of a pattern for use as a label.
func canonicalPattern(p string) string { return strings.Join(strings.Fields(p), " ") }

// match returns the route of a request, or nil. sh is the request's metrics shard. A
// path that the API may split differently from the route table matches nothing.
func (t *routeTable) match(sh int, r *http.Request) *route {
	if ambiguousPath(r.URL) || dotSegments(r.URL.Path) {
		return nil
	}
	if h := canonicalHost(r.Host); h != r.Host {
		c := *r
		c.Host = h
		r = &c
	}
	h, _ := t.muxes[sh%muxCopies].Handler(r)
	rt, _ := h.(*route)
	return rt
}

// errAmbiguousPath is the logged cause of a no_route denial for such a path.
var errAmbiguousPath = errors.New("the path holds an encoded slash, dot segment or backslash, which the API may read differently from the route table: no route is matched")

// ambiguousPath reports whether a path holds an encoded slash (%2F) or backslash (%5C),
// a backslash, or an encoded dot segment. ServeMux matches a wildcard against a whole segment after unescaping,
// so "GET /orders/{id}" matches /orders/1%2Frefund, which an API that decodes %2F before
// routing (or, for a backslash, one that treats it as a separator) reads as
// /orders/1/refund: a route the policy may not allow. Refusing them keeps the route
// tokengate checks and the route the API serves the same (Envoy's
// path_with_escaped_slashes_action REJECT_REQUEST does likewise).
//
// Likewise a dot segment that only decoding reveals: ServeMux cleans the path as sent,
// so /public/%2e%2e/orders/1 matches "/public/", while an API that decodes first serves
// /orders/1.
func ambiguousPath(u *url.URL) bool {
	if strings.IndexByte(u.Path, '\\') >= 0 {
		return true
	}
	if u.RawPath != "" {
		p := u.Path + "/"
		if strings.Contains(p, "/./") || strings.Contains(p, "/../") {
			return true
		}
	}
	raw := u.RawPath // set only when the path holds escapes that its decoding loses
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] != '%' {
			continue
		}
		switch hi, lo := raw[i+1], raw[i+2]|0x20; {
		case hi == '2' && lo == 'f', hi == '5' && lo == 'c':
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// dotSegments reports whether the decoded path has a segment that an API may read as
// a dot segment or drop: ".", ".." (perhaps spelt %2e), or, before a ';' (path
// parameters, which servlet containers remove), "", "." or "..". Also an empty
// segment inside the path ("//"), which ServeMux does not clean for CONNECT.
func dotSegments(p string) bool {
	if p == "" {
		return false
	}
	// A scan rather than strings.Split: this runs on every request.
	for i, n := 0, 0; i <= len(p); n++ {
		j := strings.IndexByte(p[i:], '/')
		last := j < 0
		if last {
			j = len(p) - i
		}
		s := p[i : i+j]
		if k := strings.IndexByte(s, ';'); k >= 0 {
			if s = s[:k]; s == "" {
				return true
			}
		}
		if s == "." || s == ".." || s == "" && n > 0 && !last {
			return true
		}
		i += j + 1
	}
	return false
}

// canonicalHost is the host in lower case without a trailing dot (the port kept).
func canonicalHost(h string) string {
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			h = strings.ToLower(h)
			break
		}
	}
	if name, port, err := net.SplitHostPort(h); err == nil && strings.HasSuffix(name, ".") {
		return net.JoinHostPort(strings.TrimSuffix(name, "."), port)
	}
	return strings.TrimSuffix(h, ".")
}
