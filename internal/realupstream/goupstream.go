package realupstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// goRoutes names the handler of each ServeMux pattern of the Go upstream.
var goRoutes = map[string]string{
	"GET /healthz":        "health",
	"GET /orders/{id}":    "orders.show",
	"POST /orders":        "orders.create",
	"DELETE /orders/{id}": "orders.delete",
	"/admin/":             "admin",
	"/":                   "fallback",
	"GET /ws/push":        "ws.push",
}

// pushInterval is how often /ws/push sends a message.
const pushInterval = 200 * time.Millisecond

// goUpstream is the Go upstream: net/http's server and ServeMux with default settings.
type goUpstream struct {
	s      *Server
	ctx    context.Context // cancelled at stop: ends the /ws/push handlers
	cancel context.CancelFunc

	mu      sync.Mutex // serializes record writes
	records *os.File
}

// startGo serves the Go upstream in this process until the test ends.
func startGo(t testing.TB, s *Server) {
	t.Helper()
	f, err := os.OpenFile(s.recordsPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("realupstream: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Close()
		t.Fatalf("realupstream: listen: %v", err)
	}
	g := &goUpstream{s: s, records: f}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	s.pushes = &pushes{}
	mux := http.NewServeMux()
	for pattern := range goRoutes {
		if pattern == "GET /ws/push" {
			mux.HandleFunc(pattern, g.push)
		} else {
			mux.HandleFunc(pattern, g.serve)
		}
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(s.log, "", log.LstdFlags),
	}
	s.Addr = ln.Addr().String()
	s.URL = "http://" + s.Addr
	s.version = runtime.Version() + " net/http"
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(s.log, "serve: %v\n", err)
		}
	}()
	t.Cleanup(func() {
		// http.Server.Close leaves hijacked connections (the WebSockets) alone: their
		// handlers end on g.ctx, and pushes.close waits for them.
		g.cancel()
		_ = srv.Close()
		<-served
		if !s.pushes.close(10 * time.Second) {
			t.Errorf("realupstream: %d /ws/push handlers still running 10s after stop", s.pushes.open())
		}
		f.Close()
	})
}

// serve records the request and answers with its record.
func (g *goUpstream) serve(w http.ResponseWriter, r *http.Request) {
	rec, err := g.record(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rec)
}

// record reads the body and appends the request's Record to the records file.
func (g *goUpstream) record(r *http.Request) (Record, error) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		return Record{}, fmt.Errorf("reading body: %w", err)
	}
	headers := map[string][]string{}
	for name, v := range r.Header {
		headers[strings.ToLower(name)] = v
	}
	// net/http moves these out of the header map; put them back. r.Host is the Host
	// header, except for an absolute-form target, whose host net/http prefers.
	if r.Host != "" {
		headers["host"] = []string{r.Host}
	}
	if len(r.TransferEncoding) > 0 {
		headers["transfer-encoding"] = r.TransferEncoding
	}
	proto := r.Proto
	if r.ProtoMajor == 2 {
		proto = "HTTP/2"
	}
	rec := Record{
		Server:    string(Go),
		Route:     goRoutes[r.Pattern],
		Method:    r.Method,
		Path:      r.URL.Path,
		Target:    r.RequestURI,
		RawQuery:  r.URL.RawQuery,
		Proto:     proto,
		Host:      r.Host,
		Headers:   headers,
		BodyBytes: int(n),
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return Record{}, fmt.Errorf("encoding record: %w", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, err := g.records.Write(append(line, '\n')); err != nil {
		return Record{}, fmt.Errorf("writing record: %w", err)
	}
	return rec, nil
}

// push is GET /ws/push: a WebSocket that sends "push N" every pushInterval and never
// reads, as a server-push stream does. It learns that the client went away only when a
// write fails, so it stands for a tunnel that outlives its client.
func (g *goUpstream) push(w http.ResponseWriter, r *http.Request) {
	if !g.s.pushes.begin() {
		http.Error(w, "stopping", http.StatusServiceUnavailable)
		return
	}
	defer g.s.pushes.end()
	if _, err := g.record(r); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		fmt.Fprintf(g.s.log, "ws.push: accept: %v\n", err)
		return
	}
	defer c.CloseNow()
	tick := time.NewTicker(pushInterval)
	defer tick.Stop()
	for i := 1; ; i++ {
		ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
		err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "push %d", i))
		cancel()
		if err != nil {
			// The only way this handler learns that the client is gone; the log
			// line lets a test see that it was a write that told.
			fmt.Fprintf(g.s.log, "ws.push: write of message %d failed, handler ends: %v\n", i, err)
			return
		}
		select {
		case <-g.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pushes counts the running /ws/push handlers and lets stop wait for them.
type pushes struct {
	mu      sync.Mutex
	n       int
	stopped bool
	zero    chan struct{} // closed when n drops to 0 after stop
}

// begin counts a handler in; it is false once the upstream is stopping.
func (p *pushes) begin() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	p.n++
	return true
}

func (p *pushes) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
	if p.stopped && p.n == 0 {
		close(p.zero)
	}
}

func (p *pushes) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// close refuses new handlers and waits up to d for the running ones to end.
func (p *pushes) close(d time.Duration) bool {
	p.mu.Lock()
	p.stopped = true
	p.zero = make(chan struct{})
	if p.n == 0 {
		close(p.zero)
	}
	zero := p.zero
	p.mu.Unlock()
	select {
	case <-zero:
		return true
	case <-time.After(d):
		return false
	}
}
