package realupstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
)

// Kind names an upstream framework.
type Kind string

// The upstreams [Start] runs.
const (
	Go        Kind = "go"
	Hypercorn Kind = "hypercorn"
	Express   Kind = "express"
	Tomcat    Kind = "tomcat"
)

// Kinds lists every Kind, for table-driven tests.
func Kinds() []Kind { return []Kind{Go, Hypercorn, Express, Tomcat} }

// Record is one request as the upstream's handler saw it. The upstream writes it
// itself, in its own language, with its framework's request API.
type Record struct {
	// Server is the Kind that wrote the record.
	Server string `json:"server"`
	// Route is the name of the handler the framework dispatched to: health,
	// orders.show, orders.create, orders.delete, admin, fallback, or ws.push.
	Route string `json:"route"`
	// Method is the method the handler saw, after any method-override middleware.
	Method string `json:"method"`
	// Path is the path the framework routed: Go r.URL.Path, Express req.path, the ASGI
	// scope's path (percent-decoded) for hypercorn, and servletPath+pathInfo (decoded,
	// ";" parameters removed, normalized) for Tomcat.
	Path string `json:"path"`
	// Target is the request target as received: the raw path, then "?" and the raw
	// query when there is one (Go r.RequestURI, Express req.originalUrl, ASGI raw_path,
	// servlet getRequestURI). Tomcat drops the scheme and host of an absolute-form
	// target, and hypercorn an empty query's "?".
	Target string `json:"target"`
	// RawQuery is the query as received, without "?".
	RawQuery string `json:"rawQuery"`
	// Proto is "HTTP/1.0", "HTTP/1.1" or "HTTP/2".
	Proto string `json:"proto"`
	// Host is the host the framework reports to the application: Go r.Host, Express
	// req.host, Starlette request.url.netloc (the server's address without a Host
	// header), servlet getServerName():getServerPort(). Empty when it reports none.
	Host string `json:"host"`
	// Headers are all request headers, by lower-cased name. Go's net/http moves Host
	// and Transfer-Encoding out of its header map; the Go upstream puts them back (as
	// "host" it can only give r.Host).
	Headers map[string][]string `json:"headers"`
	// BodyBytes is how many body bytes the handler read.
	BodyBytes int `json:"bodyBytes"`
}

// Header is the first value of the request header name (any case), or "".
func (r Record) Header(name string) string {
	if v := r.Headers[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Server is a running upstream; [Start] stops it when the test ends.
type Server struct {
	Kind Kind
	// URL is http://127.0.0.1:PORT.
	URL string
	// Addr is 127.0.0.1:PORT, for [RawRequest] and [H2CSmuggle].
	Addr string

	t           testing.TB
	version     string
	recordsPath string
	log         *e2etest.LockedBuffer
	pushes      *pushes // Go only

	mu     sync.Mutex
	offset int64 // where Records starts reading: the end of the file at the last Reset
}

// Start runs an upstream of kind on a free 127.0.0.1 port and returns once it has
// answered a request (that readiness probe is not among its Records). It stops the
// upstream (the whole process group) when the test ends and logs its output when the
// test failed. When something the upstream needs is not installed the test fails with
// what to install.
func Start(t testing.TB, kind Kind) *Server {
	t.Helper()
	s := &Server{Kind: kind, t: t, log: &e2etest.LockedBuffer{}}
	s.recordsPath = filepath.Join(t.TempDir(), "records.jsonl")
	// The file exists before the upstream starts, so that Records never fails on it.
	if err := os.WriteFile(s.recordsPath, nil, 0o600); err != nil {
		t.Fatalf("realupstream: %v", err)
	}
	t.Cleanup(func() {
		if out := s.log.String(); t.Failed() && out != "" {
			t.Logf("%s upstream (%s) output:\n%s", kind, s.version, tail(out, 8000))
		}
	})
	start := time.Now()
	switch kind {
	case Go:
		startGo(t, s)
	case Hypercorn, Express, Tomcat:
		startProcess(t, s)
	default:
		t.Fatalf("realupstream: unknown kind %q (want one of %v)", kind, Kinds())
	}
	s.waitHealthy(t)
	t.Logf("realupstream: %s at %s (%s) started in %s", kind, s.URL, s.version, time.Since(start).Round(time.Millisecond))
	return s
}

// waitHealthy sends GET /healthz until it is answered 200, then forgets the records
// that made: the upstream is serving from then on.
func (s *Server) waitHealthy(t testing.TB) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for attempt := 1; ; attempt++ {
		resp, err := client.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) || attempt == 300 {
			t.Fatalf("realupstream: %s at %s does not answer GET /healthz: %s\n%s", s.Kind, s.URL, last, tail(s.log.String(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Reset()
}

// Version is what is running, e.g. "express 5.3.0 + method-override 3.0.0 + ...".
func (s *Server) Version() string { return s.version }

// Log is what the upstream printed so far (for Go, its http.Server's error log).
func (s *Server) Log() string { return s.log.String() }

// OpenPushes is how many /ws/push connections the Go upstream's handler still holds:
// one until a write fails, which is how a handler that never reads learns that its
// client went away. It is 0 for the other kinds, which have no /ws/push.
func (s *Server) OpenPushes() int {
	if s.pushes == nil {
		return 0
	}
	return s.pushes.open()
}

// Records are the requests that reached a handler since Start or the last Reset, in
// the order the upstream wrote them. A line still being written is left for the next
// call. A line that is not a Record fails the test.
func (s *Server) Records() []Record {
	s.mu.Lock()
	offset := s.offset
	s.mu.Unlock()
	b, err := s.complete()
	if err != nil {
		s.t.Errorf("realupstream: %s records: %v", s.Kind, err)
		return nil
	}
	var out []Record
	for i, line := range bytes.Split(bytes.TrimSuffix(b[offset:], []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			s.t.Errorf("realupstream: %s record %d is not JSON: %v: %q", s.Kind, i, err, line)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Reset forgets the records so far: Records returns only what reaches the upstream
// after it. A line being written during Reset counts as after it.
func (s *Server) Reset() {
	b, err := s.complete()
	if err != nil {
		s.t.Errorf("realupstream: %s records: %v", s.Kind, err)
		return
	}
	s.mu.Lock()
	s.offset = int64(len(b))
	s.mu.Unlock()
}

// complete is the records file up to its last newline: every upstream writes a record
// and its newline with one write to a file opened O_APPEND, so what ends in a newline
// is whole.
func (s *Server) complete() ([]byte, error) {
	b, err := os.ReadFile(s.recordsPath)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.recordsPath, err)
	}
	return b[:bytes.LastIndexByte(b, '\n')+1], nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
