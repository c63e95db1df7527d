package authz

import (
	"context"
	"iter"
	"maps"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// checkService is envoy.service.auth.v3.Authorization: Envoy's ext_authz over gRPC.
type checkService struct {
	authv3.UnimplementedAuthorizationServer
	s *Server
}

// Check decides the request described by req.attributes.request.http: method, path
// (with its query), host and headers. Allowed: status OK and an OkHttpResponse that
// sets the identity headers and removes every other identity header name. Denied: the
// gRPC status of the HTTP one (UNAUTHENTICATED 401, PERMISSION_DENIED 403, UNAVAILABLE
// 503, INVALID_ARGUMENT 400) and a DeniedHttpResponse with the Gate's status,
// challenges and body, for Envoy to send the client.
//
// A check request that cannot be decided (no http attributes, a malformed method or
// path) is answered with a denial too, never with a gRPC error: Envoy's
// failure_mode_allow would let an error through. Only a call whose deadline passed
// gets its context's error, which no one reads.
func (c *checkService) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	attrs := req.GetAttributes()
	hr := attrs.GetRequest().GetHttp()
	q := question{
		method: hr.GetMethod(),
		uri:    hr.GetPath(),
		host:   hr.GetHost(),
		remote: remoteAddr(attrs.GetSource().GetAddress().GetSocketAddress()),
		names:  envoyHeaderNames(hr),
		header: envoyHeaders(hr),
	}
	a := c.s.check(ctx, protoEnvoyGRPC, &q)
	if a.gone != nil {
		return nil, status.FromContextError(a.gone).Err()
	}
	if a.status == http.StatusOK {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers:         headerOptions(a.header),
				HeadersToRemove: a.remove,
			}},
		}, nil
	}
	code := grpcCode(a.status)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: "tokengate: " + reasonOf(a)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: httpStatus(a.status)},
			Headers: headerOptions(a.header),
			Body:    string(a.body),
		}},
	}, nil
}

// reasonOf is a denial's reason for the gRPC status message: a bounded label, never
// anything the client sent.
func reasonOf(a answer) string {
	if a.err != nil {
		return a.err.code
	}
	return string(a.d.Reason)
}

// grpcCode is the gRPC status of a denial's HTTP status (google.rpc.Code).
func grpcCode(httpStatus int) codes.Code {
	switch httpStatus {
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	default:
		return codes.PermissionDenied
	}
}

// httpStatus is s as Envoy's StatusCode; 403 for one that enum does not name (Envoy's
// own default for a denial).
func httpStatus(s int) typev3.StatusCode {
	if _, ok := typev3.StatusCode_name[int32(s)]; ok && s >= http.StatusBadRequest {
		return typev3.StatusCode(s)
	}
	return typev3.StatusCode_Forbidden
}

// headerOptions turns h into Envoy's header mutations, names in lower case. A header
// of several values (the challenges of a denial with DPoP) becomes one field, its
// values comma-separated (RFC 9110 §5.3): the first mutation of a name overwrites, and
// Envoy versions differ in how they append.
func headerOptions(h http.Header) []*corev3.HeaderValueOption {
	out := make([]*corev3.HeaderValueOption, 0, len(h))
	for name, vals := range h {
		if len(vals) == 0 {
			continue
		}
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: strings.ToLower(name), Value: strings.Join(vals, ", ")},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return out
}

// envoyHeaders are the client's headers of a check request: the headers map (lower
// case names, repeated headers merged), or header_map when Envoy sends raw headers
// (encode_raw_headers). Pseudo-headers (:method, :path...) and hop-by-hop headers are
// not the client's; the names are canonicalized, as net/http's server does.
func envoyHeaders(hr *authv3.AttributeContext_HttpRequest) http.Header {
	if raw := hr.GetHeaderMap().GetHeaders(); len(raw) > 0 {
		h := make(http.Header, len(raw))
		for _, hv := range raw {
			if name := hv.GetKey(); name != "" && name[0] != ':' {
				v := hv.GetValue()
				if v == "" {
					v = string(hv.GetRawValue())
				}
				k := textproto.CanonicalMIMEHeaderKey(name)
				h[k] = append(h[k], v)
			}
		}
		removeHop(h)
		return h
	}
	m := hr.GetHeaders()
	h := make(http.Header, len(m))
	for name, v := range m {
		if name != "" && name[0] != ':' {
			k := textproto.CanonicalMIMEHeaderKey(name)
			h[k] = append(h[k], v)
		}
	}
	removeHop(h)
	return h
}

// envoyHeaderNames are the names of the headers Envoy sent, as it spelt them.
func envoyHeaderNames(hr *authv3.AttributeContext_HttpRequest) iter.Seq[string] {
	if raw := hr.GetHeaderMap().GetHeaders(); len(raw) > 0 {
		return func(yield func(string) bool) {
			for _, hv := range raw {
				if !yield(hv.GetKey()) {
					return
				}
			}
		}
	}
	return maps.Keys(hr.GetHeaders())
}

// remoteAddr is the client's address as Envoy saw it, for the log line.
func remoteAddr(sa *corev3.SocketAddress) string {
	if sa == nil {
		return ""
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
}
