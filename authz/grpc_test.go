package authz_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tokengate/tokengate/authz"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// dial connects a client generated from Envoy's protos (go-control-plane) to the rig's
// Server, running on a loopback port, over h2c as Envoy does.
func (r *rig) dial(t testing.TB) (authv3.AuthorizationClient, *grpc.ClientConn) {
	t.Helper()
	return r.dialAddr(t, r.serve(t))
}

// dialAddr connects to the Server at addr.
func (r *rig) dialAddr(t testing.TB, addr string) (authv3.AuthorizationClient, *grpc.ClientConn) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn), conn
}

// checkRequest is what Envoy sends for method path on host with headers (lower-case
// names, as Envoy sends them, pseudo-headers included).
func checkRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": method, ":path": path, ":authority": "orders.example.com", ":scheme": "https"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "orders.example.com", Scheme: "https", Protocol: "HTTP/1.1", Headers: h,
		}},
	}}
}

func headerMap(opts []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, o := range opts {
		m[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return m
}

func callCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCheckAllowed: status OK, the identity headers to set (overwriting), and every
// other identity header name, and every spelling the client sent, to remove.
func TestCheckAllowed(t *testing.T) {
	r := newRig(t)
	client, _ := r.dial(t)
	resp, err := client.Check(callCtx(t), checkRequest("GET", "/orders/42?expand=items", map[string]string{
		"authorization":  "Bearer " + r.token("orders:read"),
		"x-auth-subject": "admin",
		"x_auth_subject": "admin",
		"x-auth-role":    "root",
		"x-request-id":   "0123456789abcdef",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK {
		t.Fatalf("status %v %q", c, resp.GetStatus().GetMessage())
	}
	ok := resp.GetOkResponse()
	got := headerMap(ok.GetHeaders())
	want := map[string]string{"x-auth-subject": "user-1", "x-auth-client-id": "client-1", "x-auth-scopes": "orders:read"}
	if len(got) != len(want) {
		t.Errorf("headers %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s %q, want %q", k, got[k], v)
		}
	}
	for _, o := range ok.GetHeaders() {
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("%s is not set with OVERWRITE_IF_EXISTS_OR_ADD", o.GetHeader().GetKey())
		}
	}
	remove := slices.Sorted(slices.Values(ok.GetHeadersToRemove()))
	if want := []string{"x-auth-role", "x_auth_subject"}; !slices.Equal(remove, want) {
		t.Errorf("headers_to_remove %q, want %q", remove, want)
	}
	seen := r.lastSeen(t)
	if seen.Method != "GET" || seen.RequestURI != "/orders/42?expand=items" || seen.Host != "orders.example.com" ||
		seen.RemoteAddr != "192.0.2.7:40000" || seen.Header.Get("X-Request-Id") != "0123456789abcdef" {
		t.Errorf("decided on %s %s host %q from %q, X-Request-Id %q", seen.Method, seen.RequestURI, seen.Host, seen.RemoteAddr, seen.Header.Get("X-Request-Id"))
	}
	for name := range seen.Header {
		if strings.HasPrefix(name, ":") || strings.HasPrefix(strings.ToLower(name), "x-auth") || strings.HasPrefix(strings.ToLower(name), "x_auth") {
			t.Errorf("the Gate saw %s", name)
		}
	}
	if n := r.requests(t, "envoy_grpc", "allowed"); n != 1 {
		t.Errorf("allowed count %v", n)
	}
}

// TestCheckDenied: the gRPC status of the HTTP one, and a DeniedHttpResponse with the
// Gate's status, challenge and body. A request that cannot be decided is denied too,
// never answered with an error that failure_mode_allow would let through.
func TestCheckDenied(t *testing.T) {
	r := newRig(t)
	client, _ := r.dial(t)
	read := "Bearer " + r.token("orders:read")
	cases := []struct {
		name      string
		req       *authv3.CheckRequest
		code      codes.Code
		status    typev3.StatusCode
		challenge string
		error     string
		decision  string
	}{
		{"no token", checkRequest("GET", "/orders/1", nil), codes.Unauthenticated, typev3.StatusCode_Unauthorized,
			`Bearer realm="orders-api"`, "missing_token", "denied"},
		{"scope", checkRequest("POST", "/orders", map[string]string{"authorization": read}), codes.PermissionDenied, typev3.StatusCode_Forbidden,
			`Bearer realm="orders-api", error="insufficient_scope", error_description="the access token lacks a scope this route requires", scope="orders:write"`,
			"insufficient_scope", "denied"},
		{"two tokens merged", checkRequest("GET", "/orders/1", map[string]string{"authorization": read + "," + read}), codes.InvalidArgument, typev3.StatusCode_BadRequest,
			"", "invalid_request", "denied"},
		{"no http attributes", &authv3.CheckRequest{}, codes.InvalidArgument, typev3.StatusCode_BadRequest, "", "invalid_request", "error"},
		{"relative path", checkRequest("GET", "orders/1", map[string]string{"authorization": read}), codes.InvalidArgument, typev3.StatusCode_BadRequest,
			"", "invalid_request", "error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := r.requests(t, "envoy_grpc", tc.decision)
			resp, err := client.Check(callCtx(t), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if c := codes.Code(resp.GetStatus().GetCode()); c != tc.code {
				t.Errorf("status %v, want %v", c, tc.code)
			}
			denied := resp.GetDeniedResponse()
			if denied == nil || resp.GetOkResponse() != nil {
				t.Fatalf("no denied_response: %v", resp)
			}
			if denied.GetStatus().GetCode() != tc.status {
				t.Errorf("HTTP status %v, want %v", denied.GetStatus().GetCode(), tc.status)
			}
			h := headerMap(denied.GetHeaders())
			if tc.challenge != "" && h["www-authenticate"] != tc.challenge {
				t.Errorf("www-authenticate %q, want %q", h["www-authenticate"], tc.challenge)
			}
			if h["content-type"] != "application/json" {
				t.Errorf("content-type %q", h["content-type"])
			}
			if b := decodeBody(t, denied.GetBody()); b.Error != tc.error {
				t.Errorf("body %+v, want error %q", b, tc.error)
			}
			if n := r.requests(t, "envoy_grpc", tc.decision); n != before+1 {
				t.Errorf("%s count %v, want %v", tc.decision, n, before+1)
			}
		})
	}
}

// TestCheckChallengesJoined: two challenges (DPoP allowed) go in one header value.
func TestCheckChallengesJoined(t *testing.T) {
	r := newRig(t, withDPoP())
	client, _ := r.dial(t)
	resp, err := client.Check(callCtx(t), checkRequest("GET", "/orders/1", nil))
	if err != nil {
		t.Fatal(err)
	}
	opts := resp.GetDeniedResponse().GetHeaders()
	var n int
	for _, o := range opts {
		if o.GetHeader().GetKey() == "www-authenticate" {
			n++
			if v := o.GetHeader().GetValue(); !strings.HasPrefix(v, `Bearer realm="orders-api", DPoP realm="orders-api", algs="`) {
				t.Errorf("www-authenticate %q", v)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d www-authenticate mutations, want one", n)
	}
}

// TestCheckUnavailable: keys never loaded: UNAVAILABLE, 503 with retry-after.
func TestCheckUnavailable(t *testing.T) {
	as := jwkstest.MustNewServer(jwkstest.WithAudience(audience))
	t.Cleanup(as.Close)
	as.SetDown(true)
	r := newRigWith(t, as, false)
	client, _ := r.dial(t)
	resp, err := client.Check(callCtx(t), checkRequest("GET", "/orders/1", map[string]string{"authorization": "Bearer " + as.MustMint(nil)}))
	if err != nil {
		t.Fatal(err)
	}
	denied := resp.GetDeniedResponse()
	if codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable || denied.GetStatus().GetCode() != typev3.StatusCode_ServiceUnavailable ||
		headerMap(denied.GetHeaders())["retry-after"] == "" {
		t.Fatalf("status %v, HTTP %v, headers %v", resp.GetStatus(), denied.GetStatus(), headerMap(denied.GetHeaders()))
	}
}

// TestCheckRawHeaders: with Envoy's encode_raw_headers the headers come in header_map,
// repeated names unmerged: two Authorization headers are a malformed request.
func TestCheckRawHeaders(t *testing.T) {
	r := newRig(t)
	client, _ := r.dial(t)
	read := []byte("Bearer " + r.token("orders:read"))
	req := checkRequest("GET", "/orders/1", nil)
	hr := req.GetAttributes().GetRequest().GetHttp()
	hr.Headers = nil
	hr.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":path", RawValue: []byte("/orders/1")}, {Key: "authorization", RawValue: read}}}
	resp, err := client.Check(callCtx(t), req)
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("one token: %v, %v", resp.GetStatus(), err)
	}
	hr.HeaderMap.Headers = append(hr.HeaderMap.Headers, &corev3.HeaderValue{Key: "authorization", RawValue: read})
	resp, err = client.Check(callCtx(t), req)
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.InvalidArgument {
		t.Fatalf("two tokens: %v, %v", resp.GetStatus(), err)
	}
}

// TestCheckDeadline: a Check whose deadline passes while the Gate waits (here for a
// key set refresh an unknown kid started, from an authorization server that does not
// answer) ends at the deadline, counted as an error; the Gate's wait ends with it.
func TestCheckDeadline(t *testing.T) {
	r := newRig(t)
	client, _ := r.dial(t)
	k := jwkstest.MustGenerateKey("rotated", "ES256")
	r.as.AddKey(k, true)
	r.as.SetDelay(time.Minute)
	tok := r.as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithKey("rotated"))

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := client.Check(ctx, checkRequest("GET", "/orders/1", map[string]string{"authorization": "Bearer " + tok}))
	took := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("error %v, want DeadlineExceeded", err)
	}
	if took > 5*time.Second {
		t.Errorf("the call took %v", took)
	}
	// The server's side ends with the call: its count arrives shortly after.
	deadline := time.Now().Add(10 * time.Second)
	for r.requests(t, "envoy_grpc", "error") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("error count %v after 10 s", r.requests(t, "envoy_grpc", "error"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.as.SetDelay(0)
}

// TestCheckLimits: a CheckRequest above MaxRecvMsgSize is refused before it is decoded.
func TestCheckLimits(t *testing.T) {
	r := newRig(t)
	client, _ := r.dial(t)
	_, err := client.Check(callCtx(t), checkRequest("GET", "/orders/1", map[string]string{"x-big": strings.Repeat("a", authz.DefaultMaxRecvMsgSize)}))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("error %v, want ResourceExhausted", err)
	}
	if r.decided() != 0 {
		t.Error("the Gate was asked")
	}
}

// TestHealth: the standard gRPC health service answers SERVING for the server and for
// the Authorization service.
func TestHealth(t *testing.T) {
	r := newRig(t)
	_, conn := r.dial(t)
	h := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", authz.GRPCService} {
		resp, err := h.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%q: %v, %v", svc, resp.GetStatus(), err)
		}
	}
}
