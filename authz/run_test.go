package authz_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tokengate/tokengate/authz"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// TestRunHTTP: the endpoints answer HTTP/1.1 on the port Run serves, as nginx, Traefik
// and Envoy's HTTP service speak it.
func TestRunHTTP(t *testing.T) {
	r := newRig(t)
	addr := r.serve(t)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+addr+"/envoy/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+r.token("orders:read"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body(t, resp)
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 || resp.Header.Get("X-Auth-Subject") != "user-1" {
		t.Fatalf("%s %d X-Auth-Subject %q", resp.Proto, resp.StatusCode, resp.Header.Get("X-Auth-Subject"))
	}
	big, _ := http.NewRequest("GET", "http://"+addr+"/envoy/orders/1", nil)
	big.Header.Set("X-Big", strings.Repeat("a", 2*authz.DefaultMaxHeaderBytes))
	resp, err = client.Do(big)
	if err != nil {
		t.Fatal(err)
	}
	body(t, resp)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("headers above MaxHeaderBytes: %d", resp.StatusCode)
	}
}

// TestShutdownEndsWatch: a health Watch stream (open until its client leaves) does not
// hold Run's shutdown until its timeout.
func TestShutdownEndsWatch(t *testing.T) {
	r := newRig(t)
	srv, err := authz.New(func() authz.Snapshot { return *r.snap.Load() }, authz.Options{
		Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := healthpb.NewHealthClient(conn).Watch(callCtx(t), &healthpb.HealthCheckRequest{Service: authz.GRPCService})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := stream.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first status %v, %v", first.GetStatus(), err)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	for range 3 { // NOT_SERVING, then the end of the stream
		if _, err := stream.Recv(); err != nil {
			return
		}
	}
	t.Error("the Watch stream did not end")
}

// TestShutdownTimeout: a check request still in flight when the shutdown timeout
// passes is cut, and Run returns.
func TestShutdownTimeout(t *testing.T) {
	r := newRig(t)
	srv, err := authz.New(func() authz.Snapshot { return *r.snap.Load() }, authz.Options{
		Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()

	// A token whose key is not published yet: the Gate waits for a refresh from an
	// authorization server that answers only after a minute.
	r.as.AddKey(jwkstest.MustGenerateKey("late", "ES256"), true)
	r.as.SetDelay(time.Minute)
	defer r.as.SetDelay(0)
	tok := r.as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithKey("late"))
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	answered := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/envoy/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for r.decided() == 0 { // the request is in flight
		if time.Now().After(deadline) {
			t.Fatal("the request did not arrive")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its shutdown timeout")
	}
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("the client was not answered")
	}
}

// TestRunListenerFails: Run returns the error of a listener that stops working.
func TestRunListenerFails(t *testing.T) {
	r := newRig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = r.srv.Run(context.Background(), ln)
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Run: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := authz.New(nil, authz.Options{}); err == nil {
		t.Error("New(nil): no error")
	}
	if _, err := authz.New(func() authz.Snapshot { return authz.Snapshot{} }, authz.Options{NginxURIHeader: "X-Original URI"}); err == nil {
		t.Error("a header name with a space: no error")
	}
}

// TestHTTP2ToHTTPEndpoints: a connection that opens with the HTTP/2 preface belongs to
// the gRPC server, which refuses a request that is not gRPC (415), as
// docs/gateways.md says: the HTTP endpoints speak HTTP/1.1.
func TestHTTP2ToHTTPEndpoints(t *testing.T) {
	r := newRig(t)
	addr := r.serve(t)
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	req, _ := http.NewRequest("GET", "http://"+addr+"/envoy/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+r.token("orders:read"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body(t, resp)
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("%s %d", resp.Proto, resp.StatusCode)
	}
	if r.decided() != 0 {
		t.Error("the Gate was asked")
	}
}

// TestSilentConnection: a connection that never sends a byte does not hold Run's
// shutdown.
func TestSilentConnection(t *testing.T) {
	r := newRig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.Run(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// An HTTP/1.1 request on another connection proves the server accepts.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + ln.Addr().String() + "/envoy/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body(t, resp)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %v with a silent connection open", took)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the silent connection is still open")
	}
}
