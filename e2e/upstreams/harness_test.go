//go:build e2e

// Package upstreams_test tests the real upstreams of internal/realupstream themselves:
// each is called directly, with no tokengate in front, and must record what really
// reached its handlers. TestReadings and TestH2C hold what each framework really does
// with the request forms the security review found; the suites that put tokengate in
// front of these upstreams build on them.
//
//	go test -tags e2e -count=1 -v ./e2e/upstreams/
//
// Needs the Debian packages of tools/debs and Node.js with npm; it never skips.
package upstreams_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tokengate/tokengate/internal/realupstream"
)

// ioTimeout bounds every request the tests send.
const ioTimeout = 10 * time.Second

var client = &http.Client{Timeout: ioTimeout}

// startAll starts every kind of upstream for the test.
func startAll(t *testing.T) map[realupstream.Kind]*realupstream.Server {
	t.Helper()
	servers := map[realupstream.Kind]*realupstream.Server{}
	for _, k := range realupstream.Kinds() {
		servers[k] = realupstream.Start(t, k)
	}
	return servers
}

// only is the one record the upstream wrote since its last Reset.
func only(t *testing.T, s *realupstream.Server) realupstream.Record {
	t.Helper()
	recs := s.Records()
	if len(recs) != 1 {
		t.Fatalf("%s: want exactly one record, got %d: %+v", s.Kind, len(recs), recs)
	}
	return recs[0]
}

// TestVersions checks that what runs is what tools/debs and the lock file pin.
func TestVersions(t *testing.T) {
	want := map[realupstream.Kind]*regexp.Regexp{
		realupstream.Go:        regexp.MustCompile(`^go1\.\d+\S* net/http$`),
		realupstream.Hypercorn: regexp.MustCompile(`^hypercorn 0\.13\.2 \+ starlette 0\.26\.1 \(h11 0\.14\.0, h2 4\.1\.0, python 3\.11\.\d+\)$`),
		realupstream.Express:   regexp.MustCompile(`^express 5\.3\.0 \+ method-override 3\.0\.0 \+ router 2\.\d+\.\d+ \+ path-to-regexp 8\.\d+\.\d+ \(node v\d+\.`),
		realupstream.Tomcat:    regexp.MustCompile(`^tomcat 10\.1\.52 \(Apache Tomcat/10\.1\.52 \(Debian\), java 17\.`),
	}
	for k, s := range startAll(t) {
		if !want[k].MatchString(s.Version()) {
			t.Errorf("%s: version %q does not match %s", k, s.Version(), want[k])
		}
	}
}

// TestRoutes sends each route its canonical request with net/http's client and checks
// every field of the record, and that the answer carries the same record.
func TestRoutes(t *testing.T) {
	cases := []struct {
		method, target, body string
		route, path, query   string
	}{
		{"GET", "/healthz", "", "health", "/healthz", ""},
		{"GET", "/orders/1?expand=items&q=a%20b", "", "orders.show", "/orders/1", "expand=items&q=a%20b"},
		{"POST", "/orders", "0123456789", "orders.create", "/orders", ""},
		{"DELETE", "/orders/1", "", "orders.delete", "/orders/1", ""},
		{"GET", "/admin/x", "", "admin", "/admin/x", ""},
		{"PUT", "/admin/x/y", "abc", "admin", "/admin/x/y", ""},
		{"GET", "/other", "", "fallback", "/other", ""},
		{"PATCH", "/orders/1", "ab", "fallback", "/orders/1", ""},
	}
	for k, s := range startAll(t) {
		t.Run(string(k), func(t *testing.T) {
			for _, c := range cases {
				s.Reset()
				req, err := http.NewRequest(c.method, s.URL+c.target, strings.NewReader(c.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("X-Auth-Subject", "admin")
				req.Header.Add("X-Repeated", "one")
				req.Header.Add("X-Repeated", "two")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", c.method, c.target, err)
				}
				answer, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("%s %s: %s %v: %s", c.method, c.target, resp.Status, err, answer)
				}
				r := only(t, s)
				want := realupstream.Record{
					Server: string(k), Route: c.route, Method: c.method, Path: c.path,
					Target: c.target, RawQuery: c.query, Proto: "HTTP/1.1", Host: s.Addr,
					Headers: r.Headers, BodyBytes: len(c.body),
				}
				if !reflect.DeepEqual(r, want) {
					t.Errorf("%s %s:\n got %+v\nwant %+v", c.method, c.target, r, want)
				}
				if got := r.Headers["x-auth-subject"]; !slices.Equal(got, []string{"admin"}) {
					t.Errorf("%s %s: x-auth-subject %q", c.method, c.target, got)
				}
				if got := r.Headers["x-repeated"]; !slices.Equal(got, []string{"one", "two"}) {
					t.Errorf("%s %s: x-repeated %q, want both values apart", c.method, c.target, got)
				}
				if got := r.Header("Host"); got != s.Addr {
					t.Errorf("%s %s: host header %q", c.method, c.target, got)
				}
				var echoed realupstream.Record
				if err := json.Unmarshal(answer, &echoed); err != nil || !reflect.DeepEqual(echoed, r) {
					t.Errorf("%s %s: the answer is not the record (%v):\n%s", c.method, c.target, err, answer)
				}
			}
		})
	}
}

// TestRecords checks Reset, the order of records, and that concurrent requests leave
// whole lines.
func TestRecords(t *testing.T) {
	for k, s := range startAll(t) {
		t.Run(string(k), func(t *testing.T) {
			if recs := s.Records(); len(recs) != 0 {
				t.Fatalf("records right after Start (the readiness probe must not count): %+v", recs)
			}
			for i := 1; i <= 3; i++ {
				get(t, s.URL+fmt.Sprintf("/other?n=%d", i))
			}
			var order []string
			for _, r := range s.Records() {
				order = append(order, r.RawQuery)
			}
			if !slices.Equal(order, []string{"n=1", "n=2", "n=3"}) {
				t.Errorf("records out of order: %q", order)
			}
			s.Reset()
			if recs := s.Records(); len(recs) != 0 {
				t.Fatalf("records after Reset: %+v", recs)
			}

			// Concurrent requests with bodies of distinct sizes: each must be one
			// whole record.
			const n = 16
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					body := strings.Repeat("x", 1000+i)
					resp, err := client.Post(s.URL+"/orders", "text/plain", strings.NewReader(body))
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						errs <- fmt.Errorf("POST /orders: %s", resp.Status)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			var sizes []int
			for _, r := range s.Records() {
				if r.Route != "orders.create" {
					t.Errorf("route %q", r.Route)
				}
				sizes = append(sizes, r.BodyBytes)
			}
			slices.Sort(sizes)
			for i := range n {
				if i >= len(sizes) || sizes[i] != 1000+i {
					t.Fatalf("body sizes recorded %v, want 1000..%d once each", sizes, 1000+n-1)
				}
			}
		})
	}
}

func get(t *testing.T, url string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
}

// reading is what one framework did with a request.
type reading struct {
	status int
	route  string // the handler that ran; "" when none did, so nothing was recorded
	method string // the method the handler saw; "" for the request's own
	path   string // the path the framework routed; "" for not checked
}

func rec(route, path string) reading { return reading{status: 200, route: route, path: path} }

// recAs is a record whose handler saw another method than the request's.
func recAs(route, method, path string) reading {
	return reading{status: 200, route: route, method: method, path: path}
}

// none is an answer from the framework itself: no handler ran.
func none(status int) reading { return reading{status: status} }

// TestReadings sends the request forms where tokengate and the upstream's framework
// may disagree, raw, and checks what each framework really dispatched. A route that
// differs from Go's is a place where a path-based policy written for one reading
// guards another handler in the other.
func TestReadings(t *testing.T) {
	const (
		goK  = realupstream.Go
		hyp  = realupstream.Hypercorn
		exp  = realupstream.Express
		tom  = realupstream.Tomcat
		body = "Content-Length: 0\r\n"
	)
	probes := []struct {
		name string
		// head is the request line and header lines, each ending CRLF, without Host,
		// which is added ("Host: {addr}" unless head has one) with Connection: close;
		// {addr} is replaced by the upstream's address.
		head string
		want map[realupstream.Kind]reading
	}{
		// Case and trailing slash: Express matches case-insensitively and ignores one
		// trailing slash; the others do neither.
		{"upper-case path", "GET /ORDERS/1 HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", "/ORDERS/1"), hyp: rec("fallback", "/ORDERS/1"),
			exp: rec("orders.show", "/ORDERS/1"), tom: rec("fallback", "/ORDERS/1")}},
		{"trailing slash", "GET /orders/1/ HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", "/orders/1/"), hyp: rec("fallback", "/orders/1/"),
			exp: rec("orders.show", "/orders/1/"), tom: rec("fallback", "/orders/1/")}},
		{"upper-case and trailing slash", "GET /ORDERS/1/ HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("orders.show", "/ORDERS/1/"), tom: rec("fallback", "")}},
		{"POST to mixed-case collection", "POST /Orders HTTP/1.1\r\n" + body, map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("orders.create", "/Orders"), tom: rec("fallback", "")}},
		// The orders servlet takes "/" path info as the collection, as REST servlets
		// commonly do.
		{"POST to collection with trailing slash", "POST /orders/ HTTP/1.1\r\n" + body, map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("orders.create", "/orders/"), tom: rec("orders.create", "/orders/")}},
		{"upper-case admin", "GET /ADMIN/x HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("admin", "/ADMIN/x"), tom: rec("fallback", "")}},
		{"health with trailing slash", "GET /healthz/ HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("health", "/healthz/"), tom: rec("fallback", "")}},
		// Under /admin/: Go redirects /admin to /admin/, Tomcat's /admin/* takes
		// /admin itself, Express's /admin/*rest needs at least one character after.
		{"admin without slash", "GET /admin HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: none(307), hyp: rec("fallback", ""), exp: rec("fallback", ""), tom: rec("admin", "/admin")}},
		{"admin with slash only", "GET /admin/ HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("admin", "/admin/"), hyp: rec("admin", "/admin/"), exp: rec("fallback", ""), tom: rec("admin", "/admin/")}},
		{"method mismatch falls back, nobody answers 405", "PUT /orders/1 HTTP/1.1\r\n" + body, map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("fallback", ""), tom: rec("fallback", "")}},
		{"lower-case method", "get /healthz HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: recAs("fallback", "get", "/healthz"), hyp: recAs("health", "GET", "/healthz"),
			exp: none(400), tom: recAs("fallback", "get", "/healthz")}},

		// X-HTTP-Method-Override: only Express (method-override, on POST) acts on
		// it, and only where a route for the new method exists does it reach one.
		{"override POST to DELETE", "POST /orders/1 HTTP/1.1\r\nX-HTTP-Method-Override: DELETE\r\n" + body, map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: recAs("orders.delete", "DELETE", "/orders/1"), tom: rec("fallback", "")}},
		{"override in lower case", "POST /orders/1 HTTP/1.1\r\nX-HTTP-Method-Override: delete\r\n" + body, map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: recAs("orders.delete", "DELETE", "/orders/1"), tom: rec("fallback", "")}},
		{"override where no route has the method", "POST /orders HTTP/1.1\r\nX-HTTP-Method-Override: DELETE\r\n" + body, map[realupstream.Kind]reading{
			goK: rec("orders.create", ""), hyp: rec("orders.create", ""), exp: recAs("fallback", "DELETE", "/orders"), tom: rec("orders.create", "")}},
		{"override repeated: the first value wins", "POST /orders/1 HTTP/1.1\r\nX-HTTP-Method-Override: GET\r\nX-HTTP-Method-Override: DELETE\r\n" + body, map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: recAs("orders.show", "GET", "/orders/1"), tom: rec("fallback", "")}},
		{"override to an unknown method is ignored", "POST /orders/1 HTTP/1.1\r\nX-HTTP-Method-Override: BOGUS\r\n" + body, map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("fallback", ""), tom: rec("fallback", "")}},
		{"override on GET is ignored", "GET /orders/1 HTTP/1.1\r\nX-HTTP-Method-Override: DELETE\r\n", map[realupstream.Kind]reading{
			goK: rec("orders.show", ""), hyp: rec("orders.show", ""), exp: rec("orders.show", ""), tom: rec("orders.show", "")}},
		{"override on PATCH is ignored", "PATCH /orders/1 HTTP/1.1\r\nX-HTTP-Method-Override: DELETE\r\n" + body, map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("fallback", ""), tom: rec("fallback", "")}},
		{"override POST on admin to GET", "POST /admin/x HTTP/1.1\r\nX-HTTP-Method-Override: GET\r\n" + body, map[realupstream.Kind]reading{
			goK: rec("admin", ""), hyp: rec("admin", ""), exp: recAs("admin", "GET", "/admin/x"), tom: rec("admin", "")}},

		// ";" path parameters: Tomcat removes them from every segment before
		// mapping; the others route the ";" as part of the segment.
		{"parameter on a middle segment", "GET /orders;x/1 HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", "/orders;x/1"), hyp: rec("fallback", "/orders;x/1"), exp: rec("fallback", "/orders;x/1"), tom: rec("orders.show", "/orders/1")}},
		{"empty parameter", "GET /orders;/1 HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("fallback", ""), tom: rec("orders.show", "/orders/1")}},
		{"parameter on the last segment", "GET /orders/1;x HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("orders.show", "/orders/1;x"), hyp: rec("orders.show", "/orders/1;x"), exp: rec("orders.show", "/orders/1;x"), tom: rec("orders.show", "/orders/1")}},
		{"parameters everywhere, with a query", "GET /orders;a=b/1;c=d?x=1 HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("fallback", ""), tom: rec("orders.show", "/orders/1")}},
		{"parameter on admin", "GET /admin;x/secret HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("fallback", ""), tom: rec("admin", "/admin/secret")}},
		{"parameter on health", "GET /healthz;x HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("fallback", ""), tom: rec("health", "/healthz")}},
		{"dot-dot with a parameter", "GET /orders/..;/admin/x HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", ""), hyp: rec("fallback", ""), exp: rec("fallback", ""), tom: rec("admin", "/admin/x")}},

		// Dot segments and empty segments: Go redirects to the cleaned path, Tomcat
		// normalizes (after decoding) and serves, hypercorn and Express route as is.
		{"dot-dot", "GET /orders/../admin/x HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: none(307), hyp: rec("fallback", "/orders/../admin/x"), exp: rec("fallback", ""), tom: rec("admin", "/admin/x")}},
		{"encoded dot-dot", "GET /orders/%2e%2e/admin/x HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", "/orders/../admin/x"), hyp: rec("fallback", "/orders/../admin/x"),
			exp: rec("fallback", "/orders/%2e%2e/admin/x"), tom: rec("admin", "/admin/x")}},
		{"encoded dot as the id", "GET /orders/%2e HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("orders.show", "/orders/."), hyp: rec("orders.show", "/orders/."), exp: rec("orders.show", "/orders/%2e"), tom: rec("fallback", "/orders")}},
		{"double slash in front", "GET //admin/x HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: none(307), hyp: rec("fallback", "//admin/x"), exp: rec("fallback", ""), tom: rec("admin", "/admin/x")}},
		{"double slash inside", "GET /orders//1 HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: none(307), hyp: rec("fallback", ""), exp: rec("fallback", ""), tom: rec("orders.show", "/orders/1")}},

		// Percent-encoding: Go routes on the escaped segments but hands the handler
		// the decoded path; hypercorn decodes before Starlette routes (so %2F is a
		// slash); Express routes the path as received; Tomcat decodes, but refuses
		// %2F outright.
		{"encoded slash in the id", "GET /orders/a%2Fb HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("orders.show", "/orders/a/b"), hyp: rec("fallback", "/orders/a/b"), exp: rec("orders.show", "/orders/a%2Fb"), tom: none(400)}},
		{"encoded slash after admin", "GET /admin%2fx HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", "/admin/x"), hyp: rec("admin", "/admin/x"), exp: rec("fallback", "/admin%2fx"), tom: none(400)}},
		{"encoded letter", "GET /%61dmin/x HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("admin", "/admin/x"), hyp: rec("admin", "/admin/x"), exp: rec("fallback", "/%61dmin/x"), tom: rec("admin", "/admin/x")}},
		{"encoded NUL", "GET /orders/1%00 HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("orders.show", "/orders/1\x00"), hyp: rec("orders.show", "/orders/1\x00"), exp: rec("orders.show", "/orders/1%00"), tom: none(400)}},
		{"backslash", "GET /admin\\x HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("fallback", `/admin\x`), hyp: rec("fallback", `/admin\x`), exp: rec("fallback", `/admin\x`), tom: none(400)}},
		{"fragment in the target", "GET /orders/1#frag HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("orders.show", "/orders/1#frag"), hyp: rec("orders.show", "/orders/1#frag"), exp: rec("orders.show", "/orders/1"), tom: none(400)}},

		// Absolute-form targets: Go takes the host from the target, Express from
		// the Host header; Starlette cannot route the path hypercorn hands it.
		{"absolute-form target, same host", "GET http://{addr}/admin/x HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: rec("admin", "/admin/x"), hyp: none(404), exp: rec("admin", "/admin/x"), tom: rec("admin", "/admin/x")}},
		{"absolute-form target, other Host", "GET http://{addr}/admin/x HTTP/1.1\r\nHost: other.example\r\n", map[realupstream.Kind]reading{
			goK: rec("admin", "/admin/x"), hyp: none(404), exp: rec("admin", "/admin/x"), tom: none(400)}},
		{"asterisk-form GET", "GET * HTTP/1.1\r\n", map[realupstream.Kind]reading{
			goK: none(400), hyp: none(404), exp: rec("fallback", "*"), tom: none(400)}},
		{"two Host headers", "GET /orders/1 HTTP/1.1\r\nHost: {addr}\r\nHost: other.example\r\n", map[realupstream.Kind]reading{
			goK: none(400), hyp: none(400), exp: rec("orders.show", ""), tom: none(400)}},
		{"HTTP/1.1 without Host", "GET /healthz HTTP/1.1\r\nHost: -\r\n", map[realupstream.Kind]reading{
			goK: none(400), hyp: none(400), exp: none(400), tom: none(400)}},
	}
	servers := startAll(t)
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			for _, k := range realupstream.Kinds() {
				s, want := servers[k], p.want[k]
				raw := strings.ReplaceAll(p.head, "{addr}", s.Addr)
				switch {
				case strings.Contains(raw, "Host: -\r\n"): // no Host at all
					raw = strings.Replace(raw, "Host: -\r\n", "", 1)
				case !strings.Contains(raw, "\r\nHost: "):
					raw += "Host: " + s.Addr + "\r\n"
				}
				raw += "Connection: close\r\n\r\n"
				s.Reset()
				status, _, answer, err := realupstream.RawRequest(t, s.Addr, raw, ioTimeout)
				if err != nil {
					t.Errorf("%s: %v", k, err)
					continue
				}
				recs := s.Records()
				var got reading
				got.status = status
				if len(recs) > 1 {
					t.Errorf("%s: %d records: %+v", k, len(recs), recs)
					continue
				}
				if len(recs) == 1 {
					got.route, got.method, got.path = recs[0].Route, recs[0].Method, recs[0].Path
				}
				reqMethod, _, _ := strings.Cut(raw, " ")
				if want.route != "" && want.method == "" {
					want.method = reqMethod
				}
				if want.path == "" {
					got.path = ""
				}
				if got != want {
					t.Errorf("%s: %q\n got %+v\nwant %+v\nanswer: %.200s", k, strings.SplitN(raw, "\r\n", 2)[0], got, want, answer)
				}
			}
		})
	}
}

// TestHTTP10WithoutHost records which host each framework reports for an HTTP/1.0
// request that names none.
func TestHTTP10WithoutHost(t *testing.T) {
	servers := startAll(t)
	_, port, _ := net.SplitHostPort(servers[realupstream.Tomcat].Addr)
	want := map[realupstream.Kind]string{
		realupstream.Go:        "",                                   // r.Host
		realupstream.Hypercorn: servers[realupstream.Hypercorn].Addr, // the server's own address
		realupstream.Express:   "",                                   // req.host is undefined
		realupstream.Tomcat:    "localhost:" + port,                  // the engine's default host
	}
	for _, k := range realupstream.Kinds() {
		s := servers[k]
		s.Reset()
		status, _, answer, err := realupstream.RawRequest(t, s.Addr, "GET /healthz HTTP/1.0\r\n\r\n", ioTimeout)
		if err != nil || status != 200 {
			t.Errorf("%s: %d %v: %s", k, status, err, answer)
			continue
		}
		r := only(t, s)
		if r.Route != "health" || r.Proto != "HTTP/1.0" || r.Host != want[k] || r.Headers["host"] != nil {
			t.Errorf("%s: route %s proto %s host %q host header %q; want health HTTP/1.0 %q and no header", k, r.Route, r.Proto, r.Host, r.Headers["host"], want[k])
		}
		t.Logf("%s: HTTP/1.0 without Host: host %q", k, r.Host)
	}
}

// TestH2C sends an h2c upgrade with requests inside the tunnel. Hypercorn answers
// 101 and serves them as HTTP/2 requests; the others ignore the Upgrade header.
func TestH2C(t *testing.T) {
	servers := startAll(t)
	inner := func(addr string) []realupstream.InnerRequest {
		return []realupstream.InnerRequest{
			{Method: "GET", Path: "/admin/secret", Authority: addr, Header: http.Header{"X-Auth-Subject": {"admin"}}},
			{Method: "DELETE", Path: "/orders/1", Authority: addr},
			{Method: "POST", Path: "/orders", Authority: addr, Body: []byte("0123456789")},
		}
	}
	for _, k := range realupstream.Kinds() {
		t.Run(string(k), func(t *testing.T) {
			s := servers[k]
			s.Reset()
			res, err := realupstream.H2CSmuggle(t, s.Addr, "GET /healthz HTTP/1.1\r\nHost: "+s.Addr+"\r\n", inner(s.Addr))
			if err != nil {
				t.Fatalf("H2CSmuggle: %v (%+v)", err, res)
			}
			if k != realupstream.Hypercorn {
				// Upgrade ignored: the request is answered over HTTP/1.1.
				r := only(t, s)
				if res.UpgradeStatus != 200 || res.Inner != nil || r.Route != "health" || r.Proto != "HTTP/1.1" || r.Header("Upgrade") != "h2c" {
					t.Errorf("want the upgrade ignored: status %d, inner %+v, record %+v", res.UpgradeStatus, res.Inner, r)
				}
				return
			}
			if res.UpgradeStatus != 101 || res.Upgrade.Status != 200 {
				t.Fatalf("want 101 and then 200 on stream 1: %+v", res)
			}
			for i, ir := range res.Inner {
				if ir.Status != 200 || ir.Reset != "" {
					t.Errorf("inner request %d (stream %d): status %d reset %q", i, ir.StreamID, ir.Status, ir.Reset)
				}
			}
			// HTTP/2 streams run concurrently: the records come in any order.
			byRoute := map[string]realupstream.Record{}
			for _, r := range s.Records() {
				byRoute[r.Route] = r
				if r.Proto != "HTTP/2" {
					t.Errorf("%s recorded as %s, want HTTP/2", r.Route, r.Proto)
				}
			}
			if len(byRoute) != 4 {
				t.Fatalf("want 4 records (health on stream 1 and three inner), got %+v", byRoute)
			}
			admin := byRoute["admin"]
			if admin.Method != "GET" || admin.Path != "/admin/secret" || admin.Header("x-auth-subject") != "admin" || admin.Host != s.Addr {
				t.Errorf("admin record %+v", admin)
			}
			if r := byRoute["orders.delete"]; r.Method != "DELETE" || r.Path != "/orders/1" {
				t.Errorf("orders.delete record %+v", r)
			}
			if r := byRoute["orders.create"]; r.BodyBytes != 10 {
				t.Errorf("orders.create record %+v", r)
			}
			var echoed realupstream.Record
			if err := json.Unmarshal(res.Inner[0].Body, &echoed); err != nil || !reflect.DeepEqual(echoed, admin) {
				t.Errorf("stream 3 answered %q (%v), not the admin record", res.Inner[0].Body, err)
			}
		})
	}

	// Hypercorn upgrades on `Upgrade: h2c` alone, with neither `Connection: Upgrade`
	// nor HTTP2-Settings, which RFC 7540 §3.2 requires: a proxy that drops only the
	// Connection header does not stop it.
	t.Run("hypercorn without Connection and HTTP2-Settings", func(t *testing.T) {
		s := servers[realupstream.Hypercorn]
		s.Reset()
		conn, err := net.DialTimeout("tcp", s.Addr, ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(ioTimeout))
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: "+s.Addr+"\r\nUpgrade: h2c\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 {
			t.Fatalf("status %s, want 101", resp.Status)
		}
		// What follows the 101 is HTTP/2: a frame header whose type is SETTINGS (4).
		var frame [9]byte
		if _, err := io.ReadFull(br, frame[:]); err != nil {
			t.Fatalf("reading the first frame after 101: %v", err)
		}
		if frame[3] != 0x4 {
			t.Fatalf("first frame after 101 has type %d, want SETTINGS", frame[3])
		}
		// The upgrade request itself runs as stream 1 of the new HTTP/2 connection,
		// whether or not the client ever speaks HTTP/2: wait for its record, with the
		// connection still open.
		deadline := time.Now().Add(ioTimeout)
		for len(s.Records()) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no record of the upgrade request within %s", ioTimeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if r := only(t, s); r.Route != "health" || r.Proto != "HTTP/2" {
			t.Errorf("record %+v, want health over HTTP/2", r)
		}
	})

	// Hypercorn does not upgrade a request with a body: it answers it over HTTP/1.1.
	t.Run("hypercorn with a body", func(t *testing.T) {
		s := servers[realupstream.Hypercorn]
		s.Reset()
		status, _, answer, err := realupstream.RawRequest(t, s.Addr, "POST /orders HTTP/1.1\r\nHost: "+s.Addr+
			"\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAIAAAAA\r\nContent-Length: 10\r\n\r\n0123456789", ioTimeout)
		if err != nil || status != 200 {
			t.Fatalf("%d %v: %s", status, err, answer)
		}
		if r := only(t, s); r.Route != "orders.create" || r.Proto != "HTTP/1.1" || r.BodyBytes != 10 {
			t.Errorf("record %+v", r)
		}
	})
}

// TestPushOutlivesClient shows that the Go upstream's /ws/push handler, which never
// reads, holds its connection until a write fails: after a client's abrupt close that
// is the next push or the one after; after a client's close handshake, which the
// handler never answers, it is once the client gives up waiting (5 s in
// coder/websocket) and drops the connection.
func TestPushOutlivesClient(t *testing.T) {
	s := realupstream.Start(t, realupstream.Go)
	for _, c := range []struct {
		name  string
		close func(*websocket.Conn)
		limit time.Duration
	}{
		{"abrupt close", func(c *websocket.Conn) { c.CloseNow() }, 5 * time.Second},
		{"close handshake", func(c *websocket.Conn) { c.Close(websocket.StatusNormalClosure, "") }, 15 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			s.Reset()
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			conn, _, err := websocket.Dial(ctx, "ws://"+s.Addr+"/ws/push", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseNow()
			typ, msg, err := conn.Read(ctx)
			if err != nil || typ != websocket.MessageText || !bytes.HasPrefix(msg, []byte("push ")) {
				t.Fatalf("first message: %v %q %v", typ, msg, err)
			}
			if n := s.OpenPushes(); n != 1 {
				t.Fatalf("OpenPushes %d while the client reads, want 1", n)
			}
			if r := only(t, s); r.Route != "ws.push" || r.Header("Upgrade") != "websocket" {
				t.Errorf("record %+v", r)
			}
			logBefore := strings.Count(s.Log(), "ws.push: write of message")
			start := time.Now()
			c.close(conn)
			closed := time.Since(start)
			for s.OpenPushes() != 0 {
				if time.Since(start) > c.limit {
					t.Fatalf("OpenPushes still %d %s after the client closed", s.OpenPushes(), c.limit)
				}
				time.Sleep(10 * time.Millisecond)
			}
			noticed := time.Since(start)
			if strings.Count(s.Log(), "ws.push: write of message") != logBefore+1 {
				t.Errorf("the handler did not end on a failed write:\n%s", s.Log())
			}
			t.Logf("%s: client close returned after %s; the handler noticed after %s (pushes every 200ms)",
				c.name, closed.Round(time.Millisecond), noticed.Round(time.Millisecond))
		})
	}
}
