package sidecar

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A WebSocket tunnel is the one protocol switch the sidecar forwards (on routes with
// websocket: true; the middleware drops every other Upgrade). ReverseProxy splices the
// client's connection and the upstream's once the upstream answers 101, and waits for
// both directions to end. Left to itself, a tunnel whose client has gone lives until
// the upstream next writes, and an idle one forever. So both ends are wrapped: a
// tunnel with no bytes either way for TunnelIdle is closed, and once either side ends,
// the other is closed after tunnelLinger, time for what is in flight to arrive.
const tunnelLinger = 2 * time.Second

// tunnel is one WebSocket connection through the sidecar: its client and upstream
// ends, and when a byte last crossed it.
type tunnel struct {
	idle   time.Duration
	linger time.Duration
	last   atomic.Int64 // unix nanoseconds

	mu     sync.Mutex
	conns  []net.Conn
	ended  int
	timer  *time.Timer
	closed bool
}

func newTunnel(idle time.Duration) *tunnel {
	t := &tunnel{idle: idle, linger: min(tunnelLinger, idle)}
	t.touch()
	return t
}

func (t *tunnel) touch() { t.last.Store(time.Now().UnixNano()) }

// deadline is when the tunnel is idle for too long, unless a byte crosses it first.
func (t *tunnel) deadline() time.Time { return time.Unix(0, t.last.Load()).Add(t.idle) }

// add registers an end of the tunnel, to be closed with it. An end added after the
// tunnel closed is closed at once.
func (t *tunnel) add(c net.Conn) {
	t.mu.Lock()
	closed := t.closed
	if !closed {
		t.conns = append(t.conns, c)
	}
	t.mu.Unlock()
	if closed {
		c.Close()
	}
}

// end records that one side stopped sending (EOF) or failed: the other side gets
// tunnelLinger to finish, then both are closed; when both sides ended, at once.
func (t *tunnel) end() {
	t.mu.Lock()
	t.ended++
	both := t.ended >= 2
	if !both && t.timer == nil && !t.closed {
		t.timer = time.AfterFunc(t.linger, t.close)
	}
	t.mu.Unlock()
	if both {
		t.close()
	}
}

// close closes both ends, once.
func (t *tunnel) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	if t.timer != nil {
		t.timer.Stop()
	}
	conns := t.conns
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// tunnelEnd is one end of a tunnel: reads keep the tunnel alive, time out when it
// is idle, and report the end of the stream. It exposes only net.Conn's methods and
// CloseWrite, so that io.Copy reads through it rather than around it.
type tunnelEnd struct {
	net.Conn
	r      io.Reader // the buffered reader in front of Conn, or Conn
	t      *tunnel
	ending sync.Once
}

func (e *tunnelEnd) Read(p []byte) (int, error) {
	for {
		_ = e.Conn.SetReadDeadline(e.t.deadline())
		n, err := e.r.Read(p)
		if n > 0 {
			e.t.touch()
			return n, nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && time.Now().Before(e.t.deadline()) {
			continue // the other direction was busy: not idle
		}
		if err == nil {
			continue
		}
		e.ending.Do(e.t.end)
		return 0, err
	}
}

// CloseWrite passes on a half close, as ReverseProxy asks when the other side ends.
func (e *tunnelEnd) CloseWrite() error {
	if cw, ok := e.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// tunnelWriter is the ResponseWriter of a WebSocket handshake: the connection that
// ReverseProxy hijacks from it becomes the client end of the tunnel.
type tunnelWriter struct {
	http.ResponseWriter
	t *tunnel
}

func (w *tunnelWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	end := &tunnelEnd{Conn: conn, r: brw.Reader, t: w.t}
	w.t.add(conn)
	return end, brw, nil
}

type tunnelKey struct{}

// upgradeTransport carries a WebSocket handshake to the upstream on a connection of
// its own, never pooled, and hands the connection over as the 101 response's body so
// that it becomes the tunnel's upstream end. Other requests go to base.
type upgradeTransport struct {
	base          *http.Transport
	dialer        *net.Dialer
	headerTimeout time.Duration
}

func (u *upgradeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t, _ := req.Context().Value(tunnelKey{}).(*tunnel)
	if t == nil {
		return u.base.RoundTrip(req)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		port := "80"
		if req.URL.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(req.URL.Hostname(), port)
	}
	ctx := req.Context()
	conn, err := u.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if req.URL.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: req.URL.Hostname(), NextProtos: []string{"http/1.1"}})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	// The handshake is bounded like any request; the request's end (the client gone)
	// ends it too.
	_ = conn.SetDeadline(time.Now().Add(u.headerTimeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	br := bufio.NewReader(conn)
	resp, err := func() (*http.Response, error) {
		if err := req.Write(conn); err != nil {
			return nil, err
		}
		return http.ReadResponse(br, req)
	}()
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body = &closingBody{ReadCloser: resp.Body, conn: conn}
		return resp, nil
	}
	t.add(conn)
	resp.Body = &tunnelEnd{Conn: conn, r: br, t: t}
	return resp, nil
}

// closingBody closes the handshake's connection with the response that refused it.
type closingBody struct {
	io.ReadCloser
	conn net.Conn
}

func (b *closingBody) Close() error {
	err := b.ReadCloser.Close()
	b.conn.Close()
	return err
}

// tunnels are the open WebSocket tunnels of a sidecar, across reloads: http.Server's
// Shutdown does not wait for hijacked connections, so the sidecar closes them and
// waits for their handlers when it stops.
type tunnels struct {
	mu     sync.Mutex
	live   map[*tunnel]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newTunnels() *tunnels { return &tunnels{live: map[*tunnel]struct{}{}} }

// open starts a tunnel for a handshake; done ends its handler's hold on it.
func (ts *tunnels) open(idle time.Duration) *tunnel {
	ts.wg.Add(1)
	t := newTunnel(idle)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		t.close()
		return t
	}
	ts.live[t] = struct{}{}
	return t
}

func (ts *tunnels) done(t *tunnel) {
	t.close()
	ts.mu.Lock()
	delete(ts.live, t)
	ts.mu.Unlock()
	ts.wg.Done()
}

// closeAll closes every tunnel, refuses new ones, and waits for their handlers.
func (ts *tunnels) closeAll() {
	ts.mu.Lock()
	ts.closed = true
	open := make([]*tunnel, 0, len(ts.live))
	for t := range ts.live {
		open = append(open, t)
	}
	ts.mu.Unlock()
	for _, t := range open {
		t.close()
	}
	ts.wg.Wait()
}
