package authz_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokengate/tokengate/authz"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

// subjectIdentity puts a verified token's subject in X-Auth-Subject, and removes that
// header, in any spelling, from what a client sent. *policy.Identity does this for the
// headers forward.claims names.
type subjectIdentity struct{}

func (subjectIdentity) Set(h http.Header, c *middleware.Claims) { h.Set("X-Auth-Subject", c.Subject) }

func (subjectIdentity) StripInbound(h http.Header) {
	for name := range h {
		if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "X-Auth-Subject") {
			delete(h, name)
		}
	}
}

// startExample starts an authorization server, a Gate for an orders API and the
// decision service on a loopback port; stop ends them all.
func startExample() (as *jwkstest.Server, addr string, stop func()) {
	as = jwkstest.MustNewServer(jwkstest.WithAudience("https://orders.example.com"))
	gate, err := middleware.New(context.Background(), middleware.Config{
		Realm: "orders-api",
		Issuers: []middleware.Issuer{{
			Config:    jwks.Config{Issuer: as.Issuer},
			Audiences: []string{"https://orders.example.com"},
		}},
		Routes: []middleware.Route{{Match: "GET /orders/{id}", Scopes: []string{"orders:read"}}},
	}, middleware.Options{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gate.WaitReady(ctx); err != nil {
		panic(err)
	}
	srv, err := authz.New(func() authz.Snapshot {
		return authz.Snapshot{Gate: gate, Identity: subjectIdentity{}, IdentityHeaders: []string{"X-Auth-Subject"}}
	}, authz.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // never a port clients can reach
	if err != nil {
		panic(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx, ln) }()
	return as, ln.Addr().String(), func() {
		stopRun()
		<-done
		gate.Close()
		as.Close()
	}
}

// nginx asks, in an auth_request subrequest, about the request it holds: an allowed
// one gets the identity headers for the upstream, a denied one the RFC 6750 answer
// for the client.
func ExampleServer_nginx() {
	as, addr, stop := startExample()
	defer stop()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	ask := func(token string) {
		req, _ := http.NewRequest("GET", "http://"+addr+authz.PathNginx, nil)
		req.Header.Set("X-Original-Method", "GET")     // proxy_set_header X-Original-Method $request_method;
		req.Header.Set("X-Original-URI", "/orders/42") // proxy_set_header X-Original-URI $request_uri;
		req.Header.Set("X-Auth-Subject", "admin")      // a client's attempt
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			fmt.Println(resp.StatusCode, "X-Auth-Subject:", resp.Header.Get("X-Auth-Subject"))
			return
		}
		fmt.Println(resp.StatusCode, "WWW-Authenticate:", resp.Header.Get("WWW-Authenticate"))
		fmt.Println(resp.StatusCode, authz.BodyHeader+":", resp.Header.Get(authz.BodyHeader))
	}
	ask(as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "orders:read"}))
	ask("")
	// Output:
	// 200 X-Auth-Subject: alice
	// 401 WWW-Authenticate: Bearer realm="orders-api"
	// 401 Tokengate-Body: {"error":"missing_token","error_description":"a bearer access token is required"}
}

// Envoy's ext_authz filter calls the gRPC service envoy.service.auth.v3.Authorization
// over h2c, on the same port.
func ExampleServer_envoyGRPC() {
	as, addr, stop := startExample()
	defer stop()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	ask := func(token string) {
		headers := map[string]string{"x_auth_subject": "admin"}
		if token != "" {
			headers["authorization"] = "Bearer " + token
		}
		resp, err := client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/orders/42", Host: "orders.example.com", Headers: headers,
			}},
		}})
		if err != nil {
			panic(err)
		}
		if ok := resp.GetOkResponse(); ok != nil {
			for _, h := range ok.GetHeaders() {
				fmt.Println(codes.Code(resp.GetStatus().GetCode()), "set", h.GetHeader().GetKey(), h.GetHeader().GetValue())
			}
			fmt.Println("remove", ok.GetHeadersToRemove())
			return
		}
		denied := resp.GetDeniedResponse()
		fmt.Println(codes.Code(resp.GetStatus().GetCode()), denied.GetStatus().GetCode(), strings.TrimSpace(denied.GetBody()))
	}
	ask(as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "orders:read"}))
	ask("")
	// Output:
	// OK set x-auth-subject alice
	// remove [x_auth_subject]
	// Unauthenticated Unauthorized {"error":"missing_token","error_description":"a bearer access token is required"}
}
