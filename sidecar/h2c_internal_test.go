package sidecar

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
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

// deadlineTransport is an upstream that never answers a call before its context ends,
// as one that ignores grpc-timeout, and fails at once a call without a deadline.
type deadlineTransport struct{ deadlines []time.Duration }

func (dt *deadlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	d, ok := req.Context().Deadline()
	if !ok {
		dt.deadlines = append(dt.deadlines, 0)
		return nil, errors.New("connection refused")
	}
	dt.deadlines = append(dt.deadlines, time.Until(d))
	<-req.Context().Done()
	return nil, req.Context().Err()
}

// The proxy keeps a call's deadline (grpc-timeout) as well as its upstream: an
// upstream that lets it pass is cut there, and the call ends DEADLINE_EXCEEDED, never
// UNAVAILABLE, which a client may retry. A call without a valid grpc-timeout gets no
// deadline from the proxy.
func TestGRPCDeadlineKeptByTheProxy(t *testing.T) {
	m, err := newSidecarMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	up, _ := url.Parse("h2c://127.0.0.1:50051")
	dt := &deadlineTransport{}
	p := newProxy(&policy.Loaded{Upstream: up}, dt, newTunnels(), slog.New(slog.DiscardHandler), m)
	for _, tc := range []struct {
		timeout string
		status  string
	}{
		{"50m", "4"},
		{"", "14"},
		{"5x", "14"},
		{"123456789m", "14"}, // nine digits: not a grpc-timeout
		{"99999999H", "14"},  // longer than a time.Duration: no deadline to keep
	} {
		r := httptest.NewRequest("POST", "/grpc.testing.TestService/UnaryCall", strings.NewReader(""))
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
		r.Header.Set("Content-Type", "application/grpc")
		if tc.timeout != "" {
			r.Header.Set("Grpc-Timeout", tc.timeout)
		}
		w := httptest.NewRecorder()
		start := time.Now()
		p.ServeHTTP(w, r)
		res := w.Result()
		if got := res.Trailer.Get("Grpc-Status"); res.StatusCode != 200 || got != tc.status {
			t.Errorf("grpc-timeout %q: HTTP %d, grpc-status %q, want %s", tc.timeout, res.StatusCode, got, tc.status)
		}
		if tc.status == "4" && time.Since(start) < 50*time.Millisecond {
			t.Errorf("grpc-timeout %q: cut after %s, before the deadline", tc.timeout, time.Since(start))
		}
	}
	if len(dt.deadlines) != 5 || dt.deadlines[0] <= 0 || dt.deadlines[0] > 50*time.Millisecond || slices.ContainsFunc(dt.deadlines[1:], func(d time.Duration) bool { return d != 0 }) {
		t.Errorf("the upstream's deadlines: %v, want about 50ms for the first call and none after", dt.deadlines)
	}
}
