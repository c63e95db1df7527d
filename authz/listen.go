package authz

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// The gRPC service shares the HTTP endpoints' port, split by connection: a connection
// that opens with the HTTP/2 client preface ("PRI * HTTP/2.0...", which gRPC clients
// send at once over h2c) goes to grpc.Server's own transport, every other one to the
// http.Server. grpc.Server's ServeHTTP would serve gRPC through net/http instead, in
// one server, but it costs twice what the native transport does per call (a call
// that does nothing: 140 to 210 µs against 60 to 90 µs on loopback, measured when this
// was written; docs/gateways.md#performance), against a budget of 50 µs per
// decision. The price: the HTTP endpoints speak HTTP/1.1 (nginx, Traefik and Envoy's
// HTTP service do, by default); an HTTP/2 request to them gets gRPC's 415.

// sniffTimeout bounds how long a new connection may take to send its first bytes.
const sniffTimeout = 10 * time.Second

// splitter accepts connections from ln and hands each to grpc or to http by its first
// bytes. Its goroutines (the accept loop, one per connection while it is read) end
// when Close is called.
type splitter struct {
	ln         net.Listener
	grpc, http *childListener

	wg      sync.WaitGroup
	mu      sync.Mutex
	pending map[net.Conn]struct{} // connections whose first bytes are awaited
	closed  bool
}

func newSplitter(ln net.Listener) *splitter {
	s := &splitter{ln: ln, pending: map[net.Conn]struct{}{}}
	s.grpc, s.http = newChildListener(ln.Addr()), newChildListener(ln.Addr())
	s.wg.Go(s.accept)
	return s
}

// accept hands out connections until ln fails; then the children fail too, with its
// error.
func (s *splitter) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // a temporary failure (EMFILE); net/http waits too
			}
			s.grpc.fail(err)
			s.http.fail(err)
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.pending[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() { s.route(c) })
	}
}

// route reads the first three bytes of c and hands it on: "PRI" can only start the
// HTTP/2 preface (no HTTP/1 method is PRI; RFC 9113 §3.4).
func (s *splitter) route(c net.Conn) {
	var first [3]byte
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	_, err := io.ReadFull(c, first[:])
	_ = c.SetReadDeadline(time.Time{})
	s.mu.Lock()
	delete(s.pending, c)
	s.mu.Unlock()
	if err != nil {
		c.Close()
		return
	}
	pc := &prefixConn{Conn: c, prefix: first[:]}
	if string(first[:]) == "PRI" {
		s.grpc.deliver(pc)
		return
	}
	s.http.deliver(pc)
}

// Close stops accepting, closes the connections not yet handed on, and waits for the
// splitter's goroutines. The children's own connections are their servers' to close.
func (s *splitter) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.pending {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.grpc.fail(net.ErrClosed)
	s.http.fail(net.ErrClosed)
	return err
}

// childListener is a net.Listener of the connections the splitter hands it.
type childListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
	err   error // why Accept fails, once done is closed
}

func newChildListener(addr net.Addr) *childListener {
	return &childListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c to the server that accepts from l, or closes it when l is closed.
func (l *childListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *childListener) fail(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
	})
}

func (l *childListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close makes Accept fail; the server that accepts calls it when it stops.
func (l *childListener) Close() error { l.fail(net.ErrClosed); return nil }

func (l *childListener) Addr() net.Addr { return l.addr }

// prefixConn is a connection whose first bytes were read already: Read returns them
// first.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close the connection before closing it, as it does
// for a *net.TCPConn, so that an answer it sends before closing (431, 400) reaches the
// client instead of a reset.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
