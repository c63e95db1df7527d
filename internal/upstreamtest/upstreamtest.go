// Package upstreamtest is a recording API for tests of the proxy: it remembers every
// request that reached it and answers by path, with a WebSocket echo, a slow streamed
// response and a slow answer.
package upstreamtest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
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

	mu     sync.Mutex
	reqs   []Request
	pushes int           // push handlers running
	pushCh chan struct{} // a value each time a push handler returns
	hijack map[net.Conn]bool
}

// Paths with special answers.
const (
	WebSocketPath = "/ws"      // echoes every message, prefixed "echo: "
	PushPath      = "/ws/push" // a WebSocket that writes "hello" once and never reads a message
	StreamPath    = "/stream"  // five lines "chunk i", 100 ms apart, each flushed
	SlowPath      = "/slow"    // answers after 500 ms
)

// Start starts a Server that the test closes.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{URL: "http://" + ln.Addr().String(), pushCh: make(chan struct{}, 1024)}
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(s.serve)}
	s.wg.Go(func() { _ = s.srv.Serve(ln) })
	t.Cleanup(s.Close)
	return s
}

// Close stops the server: afterwards the upstream is down.
func (s *Server) Close() {
	_ = s.srv.Close()
	s.mu.Lock()
	for c := range s.hijack {
		c.Close() // Server.Close leaves hijacked connections alone
	}
	s.mu.Unlock()
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
	case PushPath:
		s.push(w, r)
		return
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

// push is a push-only WebSocket API, written by hand so that it does exactly that: it
// answers the handshake, sends one text frame, and from then on only waits for its
// connection to be closed under it, ignoring whatever arrives (a close frame among
// it). Such an API notices a client that left only when its proxy closes the
// connection.
func (s *Server) push(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(w, "a WebSocket handshake is required", http.StatusUpgradeRequired)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	s.wg.Add(1)
	s.mu.Lock()
	s.pushes++
	if s.hijack == nil {
		s.hijack = map[net.Conn]bool{}
	}
	s.hijack[conn] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.pushes--
		delete(s.hijack, conn)
		s.mu.Unlock()
		s.pushCh <- struct{}{}
		s.wg.Done()
	}()
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]))
	brw.Write([]byte{0x81, 5})
	brw.WriteString("hello")
	if brw.Flush() != nil {
		return
	}
	_, _ = io.Copy(io.Discard, brw) // until the connection is closed
}

// Pushes is the number of push connections the upstream holds open.
func (s *Server) Pushes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pushes
}

// PushEnded returns a channel that receives a value each time a push connection ends.
func (s *Server) PushEnded() <-chan struct{} { return s.pushCh }
