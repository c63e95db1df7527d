package authz

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Check calls the gRPC service's Check in process, without a connection: for the
// benchmark of what the adapter itself costs.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return (&checkService{s: s}).Check(ctx, req)
}
