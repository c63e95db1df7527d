// Package grpcgate guards a Go gRPC service with a *middleware.Gate: unary and stream
// server interceptors that decide every call by the Gate's routes, verify its access
// token as the HTTP middleware does, and end a denied call with the gRPC status a client
// expects, before the handler runs.
//
// It is a package of its own so that package middleware does not import grpc-go: a
// service that guards only HTTP handlers gets no gRPC dependency.
//
// # Usage
//
//	gate, err := middleware.New(ctx, middleware.Config{
//		Issuers: []middleware.Issuer{{
//			Config:    jwks.Config{Issuer: "https://auth.example.com/realms/shop"},
//			Audiences: []string{"https://orders.example.com"},
//		}},
//		Routes: []middleware.Route{
//			{Match: "/grpc.health.v1.Health/", Public: true},
//			{Match: "POST /orders.v1.Orders/GetOrder", Scopes: []string{"orders:read"}},
//			{Match: "/orders.v1.Orders/", Scopes: []string{"orders:write"}},
//		},
//	}, middleware.Options{Registerer: prometheus.DefaultRegisterer})
//	if err != nil { ... }
//	defer gate.Close()
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(grpcgate.UnaryServerInterceptor(gate)),
//		grpc.ChainStreamInterceptor(grpcgate.StreamServerInterceptor(gate)),
//	)
//
// A handler reads the caller with middleware.ClaimsFrom(ctx), as an HTTP handler does.
//
// # The request a call is decided by
//
// A Gate decides HTTP requests, and a gRPC call is one: Request builds it from the call
// as it reached the server. The method is POST and the path the full method,
// /package.Service/Method, so that routes name a method ("POST
// /orders.v1.Orders/GetOrder") or a whole service ("/orders.v1.Orders/"). The token is
// read from the authorization metadata ("Bearer …", or "DPoP …" with a dpop proof, whose
// htm is POST and htu the external URL and the full method), exactly one, as over HTTP;
// a client sets it with a grpc.PerRPCCredentials or outgoing metadata.
//
// # Denials
//
// A denied call never reaches the handler. It ends with UNAUTHENTICATED for a missing
// or invalid token (HTTP 401), PERMISSION_DENIED for a missing scope or no route (403),
// UNAVAILABLE while keys, the introspection endpoint or the replay store are unavailable
// (503), INVALID_ARGUMENT for a token sent in a malformed way (400), with the denial's
// fixed description as the message, never the token. The WWW-Authenticate challenge
// (and DPoP-Nonce, Retry-After) goes in the call's header metadata, where a client reads
// it with grpc.Header, as from the sidecar (docs/grpc.md).
package grpcgate
