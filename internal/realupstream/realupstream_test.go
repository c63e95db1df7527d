package realupstream

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

// The Go upstream runs in this process: goleak checks that stopping it leaves nothing.
// The other kinds need Debian packages and Node; e2e/upstreams tests them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGoUpstreamRecords(t *testing.T) {
	s := Start(t, Go)
	if recs := s.Records(); len(recs) != 0 {
		t.Fatalf("records after Start: %+v", recs)
	}
	req, _ := http.NewRequest("POST", s.URL+"/orders?x=1", strings.NewReader("0123456789"))
	req.Header.Set("X-Auth-Subject", "admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	recs := s.Records()
	if len(recs) != 1 {
		t.Fatalf("records: %+v", recs)
	}
	r := recs[0]
	if r.Server != "go" || r.Route != "orders.create" || r.Method != "POST" || r.Path != "/orders" ||
		r.Target != "/orders?x=1" || r.RawQuery != "x=1" || r.Proto != "HTTP/1.1" || r.Host != s.Addr ||
		r.BodyBytes != 10 || r.Header("x-auth-subject") != "admin" || r.Header("host") != s.Addr {
		t.Errorf("record %+v", r)
	}
	s.Reset()
	if recs := s.Records(); len(recs) != 0 {
		t.Fatalf("records after Reset: %+v", recs)
	}
}

func TestRawRequestAndH2CSmuggleOnGo(t *testing.T) {
	s := Start(t, Go)
	status, _, body, err := RawRequest(t, s.Addr, "GET /orders/1;x HTTP/1.0\r\n\r\n", 5*time.Second)
	if err != nil || status != 200 || !strings.Contains(string(body), `"route":"orders.show"`) {
		t.Fatalf("RawRequest: %d %v %s", status, err, body)
	}
	// net/http does not upgrade to h2c: the request is answered over HTTP/1.1.
	res, err := H2CSmuggle(t, s.Addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n", []InnerRequest{{Method: "GET", Path: "/admin/x"}})
	if err != nil || res.UpgradeStatus != 200 || res.Inner != nil {
		t.Fatalf("H2CSmuggle: %+v %v", res, err)
	}
}

func TestHelpersRefuseOtherAddresses(t *testing.T) {
	for _, addr := range []string{"192.0.2.1:80", "example.com:80", "127.0.0.1"} {
		if _, _, _, err := RawRequest(t, addr, "GET / HTTP/1.0\r\n\r\n", time.Second); err == nil {
			t.Errorf("RawRequest to %s: no error", addr)
		}
		if _, err := H2CSmuggle(t, addr, "GET / HTTP/1.1\r\n", nil); err == nil {
			t.Errorf("H2CSmuggle to %s: no error", addr)
		}
	}
}

// A push handler still running when the test ends is stopped by cleanup (goleak would
// see it otherwise).
func TestGoUpstreamStopsOpenPushes(t *testing.T) {
	t.Run("inner", func(t *testing.T) {
		s := Start(t, Go)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws://"+s.Addr+"/ws/push", nil)
		if err != nil {
			t.Fatal(err)
		}
		// The client stays open past the server's stop: its own cleanup comes last.
		t.Cleanup(func() { c.CloseNow() })
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
		if s.OpenPushes() != 1 {
			t.Fatalf("OpenPushes %d", s.OpenPushes())
		}
	})
}
