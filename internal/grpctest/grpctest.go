// Package grpctest is a real gRPC API for tests of tokengate in front of gRPC: grpc-go's
// interop TestService (unary and full-duplex streaming calls) and the standard health
// service, on a loopback port, recording what every call saw: its metadata, its
// deadline, the claims the interceptors gave it, and how it ended (a cancelled or
// expired context). It also dials clients.
package grpctest

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokengate/tokengate/middleware"
)

// Metadata keys that change what a call does.
const (
	// BlockKey makes a unary call block until its context ends (the client's deadline
	// or cancellation), then record how it ended.
	BlockKey = "x-test-block"
	// EchoTrailerKey makes a unary call send its value back as a trailer of the same
	// name.
	EchoTrailerKey = "x-test-echo-trailer"
)

// Call is what one call saw.
type Call struct {
	// Method is the full method, /grpc.testing.TestService/UnaryCall.
	Method string
	// Metadata is the call's incoming metadata.
	Metadata metadata.MD
	// Deadline is the call's deadline, zero without one.
	Deadline time.Time
	// Subject is the subject of the claims in the call's context (middleware.ClaimsFrom),
	// "" without claims.
	Subject string
	// Ended is the call context's error when the call ended with it: a blocking call,
	// or a stream that the client cancelled; nil otherwise.
	Ended error
}

// Service is the TestService. Every call is sent on Calls once it ends.
type Service struct {
	testpb.UnimplementedTestServiceServer
	calls chan Call
}

// NewService returns a Service that records up to 1024 calls before it drops them.
func NewService() *Service { return &Service{calls: make(chan Call, 1024)} }

// Calls delivers the calls, in the order they ended.
func (s *Service) Calls() <-chan Call { return s.calls }

// Next returns the next call to end, or fails t after timeout.
func (s *Service) Next(t testing.TB, timeout time.Duration) Call {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case c := <-s.calls:
		return c
	case <-timer.C:
		t.Fatalf("no gRPC call ended within %v", timeout)
		return Call{}
	}
}

// record sends the call on Calls, with md, its incoming metadata (nil: read it from
// ctx). Metadata is read once per call: metadata.FromIncomingContext copies all of it.
func (s *Service) record(ctx context.Context, md metadata.MD, method string, ended error) {
	if md == nil {
		md, _ = metadata.FromIncomingContext(ctx)
	}
	c := Call{Method: method, Metadata: md, Ended: ended}
	c.Deadline, _ = ctx.Deadline()
	if claims, ok := middleware.ClaimsFrom(ctx); ok {
		c.Subject = claims.Subject
	}
	select {
	case s.calls <- c:
	default:
	}
}

// EmptyCall answers at once.
func (s *Service) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	s.record(ctx, nil, "/grpc.testing.TestService/EmptyCall", nil)
	return &testpb.Empty{}, nil
}

// UnaryCall answers with a payload of the asked size and, as Username, the subject of
// the call's claims (or of its X-Auth-Subject metadata, which the sidecar sets). With
// BlockKey in its metadata it waits for its context to end, and fails with its error;
// with EchoTrailerKey it sends that value back as a trailer. A ResponseStatus in the
// request is the status it fails with.
func (s *Service) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	const method = "/grpc.testing.TestService/UnaryCall"
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md[BlockKey]) > 0 {
		<-ctx.Done()
		s.record(ctx, md, method, ctx.Err())
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	s.record(ctx, md, method, nil)
	if v := md[EchoTrailerKey]; len(v) > 0 {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(EchoTrailerKey, v[0]))
	}
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	resp := &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, req.GetResponseSize())}}
	if claims, ok := middleware.ClaimsFrom(ctx); ok {
		resp.Username = claims.Subject
	} else if v := md["x-auth-subject"]; len(v) == 1 {
		resp.Username = v[0]
	}
	return resp, nil
}

// FullDuplexCall answers every request at once with one response per
// ResponseParameters entry (a payload of its size), until the client closes its side
// or the call's context ends; a context that ends is recorded as the call's end.
func (s *Service) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	const method = "/grpc.testing.TestService/FullDuplexCall"
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				s.record(ctx, nil, method, ctx.Err())
				return status.FromContextError(ctx.Err()).Err()
			}
			s.record(ctx, nil, method, nil)
			if errors.Is(err, io.EOF) { // the client closed its side
				return nil
			}
			return err
		}
		for _, p := range req.GetResponseParameters() {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
				s.record(ctx, nil, method, ctx.Err())
				return err
			}
		}
	}
}

// Server is a grpc.Server with the TestService and the health service (which reports
// SERVING for "" and grpc.testing.TestService) on a loopback port.
type Server struct {
	// Addr is host:port.
	Addr    string
	Service *Service
	Health  *health.Server
	srv     *grpc.Server
	done    chan struct{}
}

// Start starts a Server that is stopped when the test ends. opts go to grpc.NewServer
// (interceptors).
func Start(t testing.TB, opts ...grpc.ServerOption) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), Service: NewService(), Health: health.NewServer(), srv: grpc.NewServer(opts...), done: make(chan struct{})}
	testpb.RegisterTestServiceServer(s.srv, s.Service)
	healthpb.RegisterHealthServer(s.srv, s.Health)
	s.Health.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	t.Cleanup(s.Stop)
	return s
}

// Register adds the TestService and the health service to srv, for a server the caller
// runs (grpc.Server.ServeHTTP behind a Handler).
func Register(srv *grpc.Server, svc *Service) *health.Server {
	h := health.NewServer()
	testpb.RegisterTestServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, h)
	h.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	return h
}

// Stop stops the server (ending every call, and the health service's watches) and waits
// for it.
func (s *Server) Stop() {
	s.Health.Shutdown()
	s.srv.Stop()
	<-s.done
}

// Dial returns a client connection to addr in clear text (h2c), closed when the test
// ends.
func Dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// WithToken returns ctx with an Authorization: Bearer metadata for the outgoing call;
// "" adds none.
func WithToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
