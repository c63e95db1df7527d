package middleware

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// route is a Route ready for the request path.
type route struct {
	Route
	pattern string // the Match as ServeMux canonicalised it: the route metric label
	need    scopeNeed
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
// An API may read a request's path differently from ServeMux: in another case, without
// its trailing slash, without its ";" parameters. The table matches every reading its
// PathStyle says the API may make (readings), so that the Gate decides on each.
//
// ServeMux takes a read lock for every match, and a read lock writes a counter that
// every core shares; so the table holds identical copies of the mux, and a request uses
// the copy of its metrics shard, which stays on one core.
type routeTable struct {
	muxes  [muxCopies]*http.ServeMux
	folded [muxCopies]*http.ServeMux // the patterns' paths in lower case; = muxes when they have no upper case
	routes []*route
	style  readingRules
	// slashSegments holds the segment counts of the patterns that match a path ending
	// in '/' (a subtree, "{$}" after a slash, a final "{name...}"): a path whose count
	// with a slash added is not among them needs no such reading.
	slashSegments segmentSet
}

const muxCopies = 8

func compileRoutes(routes []Route, style PathStyle) (*routeTable, []error) {
	t := &routeTable{style: rulesOf(style)}
	for i := range t.muxes {
		t.muxes[i] = http.NewServeMux()
	}
	t.folded = t.muxes
	var errs []error
	bad := func(i int, field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: fmt.Sprintf("Routes[%d].%s", i, field), Problem: fmt.Sprintf(format, args...)})
	}
	for i, r := range routes {
		rt := &route{Route: r, index: i}
		if r.Public && (len(r.Scopes) > 0 || len(r.AnyScopes) > 0) {
			bad(i, "Public", "a public route cannot require scopes")
		}
		for j, s := range r.Scopes {
			if !validScope(s) {
				bad(i, fmt.Sprintf("Scopes[%d]", j), "%q is not a scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", s)
			}
		}
		for j, s := range r.AnyScopes {
			if !validScope(s) {
				bad(i, fmt.Sprintf("AnyScopes[%d]", j), "%q is not a scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", s)
			}
		}
		rt.need = newScopeNeed(r.Scopes, r.AnyScopes)
		if err := handle(t.muxes[0], r.Match, rt); err != nil {
			bad(i, "Match", "%v", err)
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
	if t.style.fold {
		errs = append(errs, t.compileFolded(style)...)
	}
	for _, rt := range t.routes {
		p := rt.Match
		if i := strings.IndexByte(p, '/'); i >= 0 {
			p = strings.TrimSuffix(p[i:], "{$}")
			if strings.HasSuffix(p, "/") || strings.HasSuffix(p, "...}") {
				t.slashSegments.put(strings.Count(p, "/"))
			}
		}
	}
	t.addSentinels()
	return t, errs
}

// unmatched is the handler of the pattern "/" when no route has it: a request that
// only it matches matches no route. Without it, a request that matches nothing costs
// ServeMux the list of methods for a 405 answer it never gives, a dozen allocations on
// each of a request's readings.
var unmatched = http.NotFoundHandler()

func (t *routeTable) addSentinels() {
	for _, set := range []*[muxCopies]*http.ServeMux{&t.muxes, &t.folded} {
		if set == &t.folded && t.folded == t.muxes {
			continue
		}
		for _, mux := range set {
			_ = handle(mux, "/", unmatched) // refused when a route is "/": then none is needed
		}
	}
}

// compileFolded builds the table of an API that matches paths in any case: the same
// patterns with their paths in lower case. Two routes that only case tells apart are
// one route to such an API, and an error.
func (t *routeTable) compileFolded(style PathStyle) []error {
	upper := false
	for _, rt := range t.routes {
		if foldPattern(rt.Match) != rt.Match {
			upper = true
		}
	}
	if !upper {
		return nil // folding changes no pattern: one table serves both readings
	}
	var errs []error
	first := map[string]*route{}
	for i := range t.folded {
		t.folded[i] = http.NewServeMux()
	}
	for _, rt := range t.routes {
		fp := foldPattern(rt.Match)
		if err := handle(t.folded[0], fp, rt); err != nil {
			other := ""
			for p, o := range first {
				if conflicts(p, fp) {
					other = fmt.Sprintf(" (Routes[%d], %q)", o.index, o.Match)
				}
			}
			errs = append(errs, &FieldError{Field: fmt.Sprintf("Routes[%d].Match", rt.index),
				Problem: fmt.Sprintf("%q is the same route as another%s to an API that matches paths in any case (PathStyle %s): remove one, or choose PathStyle exact if the API tells them apart", rt.Match, other, style)})
			continue
		}
		first[fp] = rt
		for _, mux := range t.folded[1:] {
			mux.Handle(fp, rt)
		}
	}
	return errs
}

// conflicts reports whether two patterns cannot both be registered on one ServeMux.
func conflicts(a, b string) bool {
	mux := http.NewServeMux()
	if handle(mux, a, http.NotFoundHandler()) != nil {
		return false
	}
	return handle(mux, b, http.NotFoundHandler()) != nil
}

// foldPattern is a pattern with its path in lower case; the method (case-sensitive)
// and the host (matched in lower case already) are kept.
func foldPattern(p string) string {
	i := strings.IndexByte(p, '/')
	if i < 0 {
		return p
	}
	return p[:i] + strings.ToLower(p[i:])
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
			for {
				i := strings.Index(msg, " (registered at ")
				if i < 0 {
					break
				}
				j := strings.Index(msg[i:], ")")
				if j < 0 {
					break
				}
				msg = msg[:i] + msg[i+j+1:]
			}
			err = fmt.Errorf("%s", strings.TrimPrefix(msg, "http: "))
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// canonicalPattern normalises the spacing of a pattern for use as a label.
func canonicalPattern(p string) string { return strings.Join(strings.Fields(p), " ") }

// maxReadings bounds the readings of one request: two methods (as sent, in upper case)
// times four paths (as sent, in lower case, with the trailing slash toggled, both).
const maxReadings = 8

// matched is the outcome of matching one request: the route of its primary reading
// (nil when there is none, with why), and the other routes that its other readings
// match, each once.
type matched struct {
	primary *route
	others  [maxReadings - 1]*route
	n       int
	why     error
}

// allPublic reports whether every matched route is public.
func (m *matched) allPublic() bool {
	for rt := range m.routesSeq() {
		if !rt.Public {
			return false
		}
	}
	return true
}

// singleUse returns the first matched route that is single-use, or nil: a request that
// any reading of which reaches a single-use route uses its token up.
func (m *matched) singleUse() *route {
	for rt := range m.routesSeq() {
		if rt.SingleUse {
			return rt
		}
	}
	return nil
}

// routesSeq is the matched routes, the primary's first, without allocating.
func (m *matched) routesSeq() func(yield func(*route) bool) {
	return func(yield func(*route) bool) {
		if m.primary != nil && !yield(m.primary) {
			return
		}
		for _, o := range m.others[:m.n] {
			if !yield(o) {
				return
			}
		}
	}
}

func (m *matched) add(rt *route, _ string) {
	if rt == nil || rt == m.primary {
		return
	}
	for _, o := range m.others[:m.n] {
		if o == rt {
			return
		}
	}
	m.others[m.n] = rt
	m.n++
}

// all returns the matched routes, the primary's first.
func (m *matched) all() []*route {
	out := make([]*route, 0, m.n+1)
	if m.primary != nil {
		out = append(out, m.primary)
	}
	return append(out, m.others[:m.n]...)
}

// match matches every reading of a request that the table's style names into m. sh is
// the request's metrics shard. A path that the API may split differently from the
// route table (an encoded slash, a dot segment) matches nothing, and neither does one
// whose primary reading matches nothing: fail closed.
func (t *routeTable) match(sh int, r *http.Request, m *matched) {
	*m = matched{}
	switch {
	case ambiguousPath(r.URL) || dotSegments(r.URL.Path):
		m.why = errAmbiguousPath
		return
	case strings.IndexByte(r.RequestURI, '#') >= 0:
		// A request target never holds a fragment (RFC 9112 §3.2), and Go keeps one
		// in the path, while Express drops it: /orders#x would be the catch-all here
		// and GET /orders there.
		m.why = errFragment
		return
	case r.Method == http.MethodConnect:
		// ServeMux matches CONNECT by host and an unclean path; an API cannot route a
		// tunnel by path at all.
		m.why = errConnect
		return
	}
	p := r.URL.Path
	if strings.IndexByte(p, ';') >= 0 {
		switch t.style.semicolons {
		case semicolonsRefuse:
			m.why = errSemicolon
			return
		case semicolonsStrip:
			p = stripParams(p)
		}
	}
	// One scratch request serves every reading: ServeMux reads only its Method, Host
	// and URL.Path.
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	sc.r.Host, sc.r.URL = canonicalHost(r.Host), &sc.u
	mux, folded := t.muxes[sh%muxCopies], t.folded[sh%muxCopies]
	look := func(mux *http.ServeMux, method, path string) (*route, string) {
		sc.r.Method, sc.u.Path = method, path
		h, pattern := mux.Handler(&sc.r)
		rt, _ := h.(*route)
		return rt, pattern
	}

	st := t.style
	base := [2]reading{{mux, p}}
	if st.foldPrimary {
		base[0] = reading{folded, strings.ToLower(p)}
	}
	m.primary, _ = look(base[0].mux, r.Method, base[0].path)
	if m.primary == nil {
		m.why = errNoPattern
		return
	}
	nb := 1
	if st.fold && !st.foldPrimary {
		if lp := strings.ToLower(p); lp != p || folded != mux { // ToLower returns p itself when it has no upper case
			base[1], nb = reading{folded, lp}, 2
		}
	}
	methods := [2]string{r.Method}
	nm := 1
	if st.upperMethod {
		if up := upperASCII(r.Method); up != r.Method {
			methods[1], nm = up, 2
		}
	}
	for i, method := range methods[:nm] {
		for j, b := range base[:nb] {
			if i > 0 || j > 0 {
				m.add(look(b.mux, method, b.path))
			}
			if !st.toggleSlash {
				continue
			}
			// An API that ignores a trailing slash serves /orders/1/ as /orders/1, and
			// /orders as a route written /orders/. A longer route that only a slash
			// added reaches (/orders/ for /orders/1) is not one: it is not what such an
			// API serves for /orders/1.
			switch q := b.path; {
			case q == "/":
			case q[len(q)-1] == '/':
				m.add(look(b.mux, method, q[:len(q)-1]))
			case t.slashSegments.has(strings.Count(q, "/") + 1):
				q += "/"
				if rt, pattern := look(b.mux, method, q); rt != nil && segments(pattern) == strings.Count(q, "/") {
					m.add(rt, "")
				}
			}
		}
	}
}

// reading is a path and the table it is matched in.
type reading struct {
	mux  *http.ServeMux
	path string
}

// segmentSet is a set of segment counts; 63 stands for 63 and more.
type segmentSet uint64

func (s *segmentSet) put(n int)     { *s |= 1 << min(n, 63) }
func (s segmentSet) has(n int) bool { return s&(1<<min(n, 63)) != 0 }

// segments counts the segments of a pattern's path, without a final {$}: the number
// of '/' in it.
func segments(pattern string) int {
	i := strings.IndexByte(pattern, '/')
	if i < 0 {
		return 0
	}
	return strings.Count(strings.TrimSuffix(pattern[i:], "{$}"), "/")
}

// scratch is a request to match readings with, pooled: a copy of each request would
// be an allocation of its own.
type scratch struct {
	r http.Request
	u url.URL
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// stripParams removes the ";parameters" of every path segment, as a servlet container
// does before it maps the path ("/orders;x/1" is "/orders/1").
func stripParams(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); {
		j := strings.IndexByte(p[i:], ';')
		if j < 0 {
			b.WriteString(p[i:])
			break
		}
		b.WriteString(p[i : i+j])
		i += j
		k := strings.IndexByte(p[i:], '/')
		if k < 0 {
			break
		}
		i += k
	}
	return b.String()
}

func upperASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'a' <= c && c <= 'z' {
			return strings.ToUpper(s)
		}
	}
	return s
}

// The logged causes of a no_route denial that no route could have matched.
var (
	errAmbiguousPath = errors.New("the path holds an encoded slash, dot segment or backslash, which the API may read differently from the route table: no route is matched")
	errSemicolon     = errors.New("the path holds ';', which servlet containers read as a path parameter and drop: no route is matched (upstreamPaths servlet decides on the path without them)")
	errConnect       = errors.New("CONNECT opens a tunnel that no route can decide on: no route is matched")
	errNoPattern     = errors.New("no route pattern matches this method, host and path")
	errFragment      = errors.New("the request target holds a fragment ('#'), which some APIs drop before routing: no route is matched")
)

// ambiguousPath reports whether a path holds an encoded slash (%2F) or backslash (%5C),
// or a backslash. ServeMux matches a wildcard against a whole segment after unescaping,
// so "GET /orders/{id}" matches /orders/1%2Frefund, which an API that decodes %2F before
// routing (or, for a backslash, one that treats it as a separator) reads as
// /orders/1/refund: a route the policy may not allow. Refusing them keeps the route
// tokengate checks and the route the API serves the same (Envoy's
// path_with_escaped_slashes_action REJECT_REQUEST does likewise).
//
// Likewise a dot segment that only decoding reveals: ServeMux cleans the path as sent,
// so /public/%2e%2e/orders/1 matches "/public/", while an API that decodes first serves
// /orders/1. dotSegments refuses those: it reads the decoded path, where %2e is a dot.
func ambiguousPath(u *url.URL) bool {
	if strings.IndexByte(u.Path, '\\') >= 0 {
		return true
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
	if !strings.Contains(h, ".:") && !strings.HasSuffix(h, ".") {
		return h // no trailing dot: the common case, without SplitHostPort's error
	}
	if name, port, err := net.SplitHostPort(h); err == nil && strings.HasSuffix(name, ".") {
		return net.JoinHostPort(strings.TrimSuffix(name, "."), port)
	}
	return strings.TrimSuffix(h, ".")
}
