package authz_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/tokengate/tokengate/authz"
)

// The benchmarks measure what a decision costs through each protocol against the
// Gate's decision alone, in the same run (docs/gateways.md#performance):
//
//	go test -run '^$' -bench . -benchmem ./authz/
//
// BenchmarkDecide is the baseline: Gate.Decide on the request the endpoints rebuild
// (an allowed GET with a cached token). BenchmarkHandler adds each adapter, in
// process (for HTTP with httptest's request and recorder, for gRPC the Check method
// with a decoded CheckRequest); BenchmarkLoopback adds the gateway's connection too:
// HTTP/1.1 with keep-alive, and gRPC over h2c, each from a client in the same process
// on 127.0.0.1, beside the same transports with a handler that does nothing (noop),
// so that what the transport costs and what tokengate adds can be told apart.

func benchRig(b *testing.B) (*rig, string) {
	r := newRig(b, unobserved())
	return r, "Bearer " + r.token("orders:read")
}

func BenchmarkDecide(b *testing.B) {
	r, auth := benchRig(b)
	req := httptest.NewRequest("GET", "/orders/42?expand=items", nil)
	req.Host = "orders.example.com"
	req.Header.Set("Authorization", auth)
	b.ReportAllocs()
	for b.Loop() {
		if d := r.gate.Decide(req); !d.Allowed() {
			b.Fatal(d.Reason)
		}
	}
}

func BenchmarkHandler(b *testing.B) {
	r, auth := benchRig(b)
	for _, tc := range []struct {
		name   string
		method string
		target string
		header http.Header
	}{
		{"nginx", "GET", authz.PathNginx, http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/orders/42?expand=items"}}},
		{"traefik", "GET", authz.PathTraefik, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42?expand=items"},
			"X-Forwarded-Host": {"orders.example.com"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-For": {"192.0.2.1"}}},
		{"envoy_http", "GET", authz.PathEnvoy + "/orders/42?expand=items", http.Header{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(tc.method, tc.target, nil)
				req.Host = "orders.example.com"
				for k, v := range tc.header {
					req.Header[k] = v
				}
				req.Header.Set("Authorization", auth)
				req.Header.Set("User-Agent", "bench")
				w := httptest.NewRecorder()
				r.handler.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}

// BenchmarkHandlerGRPC is the gRPC adapter in process: Check on a decoded request.
func BenchmarkHandlerGRPC(b *testing.B) {
	r, auth := benchRig(b)
	req := checkRequest("GET", "/orders/42?expand=items", map[string]string{"authorization": auth, "user-agent": "bench", "x-request-id": "0123456789abcdef"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := r.srv.Check(ctx, req)
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			b.Fatal(resp.GetStatus(), err)
		}
	}
}

// noopAuthorization answers every Check OK at once: the gRPC transport alone.
type noopAuthorization struct {
	authv3.UnimplementedAuthorizationServer
}

func (noopAuthorization) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{}, nil
}

func BenchmarkLoopback(b *testing.B) {
	r, auth := benchRig(b)
	addr := r.serve(b)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.Cleanup(client.CloseIdleConnections)
	for _, tc := range []struct{ name, path, method, uri string }{
		{"nginx", authz.PathNginx, "GET", "/orders/42?expand=items"},
		{"envoy_http", authz.PathEnvoy + "/orders/42?expand=items", "", ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", "http://"+addr+tc.path, nil)
			req.Host = "orders.example.com"
			req.Header.Set("Authorization", auth)
			if tc.method != "" {
				req.Header.Set("X-Original-Method", tc.method)
				req.Header.Set("X-Original-URI", tc.uri)
			}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.StatusCode)
				}
			}
		})
	}
	grpcReq := checkRequest("GET", "/orders/42?expand=items", map[string]string{"authorization": auth, "user-agent": "bench", "x-request-id": "0123456789abcdef"})
	b.Run("envoy_grpc", func(b *testing.B) {
		client, _ := r.dialAddr(b, addr)
		benchCheck(b, client, grpcReq)
	})
	b.Run("noop_http", func(b *testing.B) {
		noop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
		}))
		b.Cleanup(noop.Close)
		req, _ := http.NewRequest("GET", noop.URL+authz.PathEnvoy+"/orders/42?expand=items", nil)
		req.Header.Set("Authorization", auth)
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.Run("noop_grpc", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := grpc.NewServer()
		authv3.RegisterAuthorizationServer(srv, noopAuthorization{})
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		b.Cleanup(func() { srv.Stop(); <-served })
		client, _ := r.dialAddr(b, ln.Addr().String())
		benchCheck(b, client, grpcReq)
	})
}

func benchCheck(b *testing.B, client authv3.AuthorizationClient, req *authv3.CheckRequest) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Check(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			b.Fatal(resp.GetStatus())
		}
	}
}
