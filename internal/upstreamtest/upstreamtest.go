// Package upstreamtest is a recording API for tests of the proxy: it remembers every
// request that reached it and answers by path, with a WebSocket echo, a slow streamed
// response and a slow answer.
package upstreamtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Request is what reached the upstream.
type Request struct {
	Method, Path, Query string
	Header              http.Header
	BodySHA256          string
	BodyLen             int64
}

// Server is the recording upstream on a loopback port.
type Server struct {
	URL string
	srv *http.Server
	wg  sync.WaitGroup

	mu   sync.Mutex
	reqs []Request
}

// Paths with special answers.
const (
	WebSocketPath = "/ws"     // echoes every message, prefixed "echo: "
	StreamPath    = "/stream" // five lines "chunk i", 100 ms apart, each flushed
	SlowPath      = "/slow"   // answers after 500 ms
)

// Start starts a Server that the test closes.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{URL: "http://" + ln.Addr().String()}
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(s.serve)}
	s.wg.Go(func() { _ = s.srv.Serve(ln) })
	t.Cleanup(s.Close)
	return s
}

// Close stops the server: afterwards the upstream is down.
func (s *Server) Close() {
	_ = s.srv.Close()
	s.wg.Wait()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case WebSocketPath:
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	case StreamPath:
		fl := w.(http.Flusher)
		for i := range 5 {
			fmt.Fprintf(w, "chunk %d\n", i)
			fl.Flush()
			time.Sleep(100 * time.Millisecond)
		}
		return
	case SlowPath:
		time.Sleep(500 * time.Millisecond)
	}
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, Request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), hex.EncodeToString(h.Sum(nil)), n})
	s.mu.Unlock()
	fmt.Fprintf(w, "upstream saw %s %s", r.Method, r.URL.Path)
}

// Count is the number of requests that reached the upstream.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// Last is the last request that reached the upstream.
func (s *Server) Last() Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return Request{}
	}
	return s.reqs[len(s.reqs)-1]
}
