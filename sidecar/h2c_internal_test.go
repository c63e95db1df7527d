package sidecar

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/policy"
)

// seenRequest records what the proxy sent upstream.
type seenRequest struct {
	url       *url.URL
	idleBody  bool
	bodyBytes string
}

type recordingTransport struct{ seen []seenRequest }

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	_, idle := req.Context().Value(idleKey{}).(*idleBody)
	b, _ := io.ReadAll(req.Body)
	rt.seen = append(rt.seen, seenRequest{url: req.URL, idleBody: idle, bodyBytes: string(b)})
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

// A gRPC call's body is a stream of messages that may pause for as long as the call
// lives: limits.bodyIdle, which cuts any other request body that pauses, leaves it
// alone. And an h2c upstream is sent its requests at an http URL.
func TestGRPCBodyHasNoIdleLimit(t *testing.T) {
	m, err := newSidecarMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	up, _ := url.Parse("h2c://127.0.0.1:50051")
	rt := &recordingTransport{}
	p := newProxy(&policy.Loaded{Upstream: up, Limits: policy.Limits{BodyIdle: time.Millisecond}}, rt, newTunnels(), slog.New(slog.DiscardHandler), m)
	for _, ct := range []string{"application/grpc", "application/grpc+proto", "application/json"} {
		r := httptest.NewRequest("POST", "/grpc.testing.TestService/FullDuplexCall", strings.NewReader("message"))
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
		r.Header.Set("Content-Type", ct)
		p.ServeHTTP(httptest.NewRecorder(), r)
	}
	if len(rt.seen) != 3 {
		t.Fatalf("%d requests upstream, want 3", len(rt.seen))
	}
	for i, s := range rt.seen {
		if s.url.Scheme != "http" || s.url.Host != "127.0.0.1:50051" || s.bodyBytes != "message" {
			t.Errorf("request %d went to %v with body %q", i, s.url, s.bodyBytes)
		}
		if grpc := i < 2; s.idleBody == grpc {
			t.Errorf("request %d: idle limit %v, want %v", i, s.idleBody, !grpc)
		}
	}
}
