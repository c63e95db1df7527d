package grpcgate_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokengate/tokengate/grpcgate"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

// orders is the service: it reads the caller from the claims, as an HTTP handler does.
type orders struct {
	testpb.UnimplementedTestServiceServer
}

func (orders) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	claims, ok := middleware.ClaimsFrom(ctx)
	if !ok { // never behind the interceptor on a guarded route; check anyway
		return nil, status.Error(codes.Internal, "no claims")
	}
	return &testpb.SimpleResponse{Username: claims.Subject}, nil
}

// A Go gRPC service guards its methods with the same Gate and routes as HTTP handlers.
func ExampleUnaryServerInterceptor() {
	as := jwkstest.MustNewServer(jwkstest.WithAudience("https://orders.example.com")) // the authorization server
	defer as.Close()

	gate, err := middleware.New(context.Background(), middleware.Config{
		Realm: "orders-api",
		Issuers: []middleware.Issuer{{
			Config:    jwks.Config{Issuer: as.Issuer},
			Audiences: []string{"https://orders.example.com"},
		}},
		Routes: []middleware.Route{
			{Match: "/grpc.health.v1.Health/", Public: true},
			{Match: "POST /grpc.testing.TestService/UnaryCall", Scopes: []string{"orders:read"}},
		},
	}, middleware.Options{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer gate.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gate.WaitReady(ctx); err != nil {
		panic(err)
	}

	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpcgate.UnaryServerInterceptor(gate)),
		grpc.ChainStreamInterceptor(grpcgate.StreamServerInterceptor(gate)),
	)
	testpb.RegisterTestServiceServer(srv, orders{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	client := testpb.NewTestServiceClient(cc)
	call := func(token string) {
		ctx := ctx
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		var header metadata.MD
		resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Header(&header))
		if err != nil {
			fmt.Println(status.Code(err), header.Get("www-authenticate"))
			return
		}
		fmt.Println("OK", resp.GetUsername())
	}
	call(as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "orders:read"}))
	call("")
	call(as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(-time.Hour).Unix()}))
	call(as.MustMint(jwkstest.Claims{"scope": "orders:write"}))
	// Output:
	// OK alice
	// Unauthenticated [Bearer realm="orders-api"]
	// Unauthenticated [Bearer realm="orders-api", error="invalid_token", error_description="the access token expired"]
	// PermissionDenied [Bearer realm="orders-api", error="insufficient_scope", error_description="the access token lacks a scope this route requires", scope="orders:read"]
}
