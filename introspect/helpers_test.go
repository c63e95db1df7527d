package introspect_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokengate/tokengate/internal/testclock"
	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The resource server's credentials at the test authorization server.
const (
	clientID = "orders-api"
	secret   = "s3cr3t-Value!"
)

// epoch is where test clocks start.
var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// server starts a jwkstest server on clk (nil: the real clock) with the resource
// server registered as a client; the test closes it.
func server(t testing.TB, clk *testclock.Clock) *jwkstest.Server {
	t.Helper()
	var opts []jwkstest.Option
	if clk != nil {
		opts = append(opts, jwkstest.WithClock(clk.Now))
	}
	as, err := jwkstest.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	as.AddClient(jwkstest.Client{ID: clientID, Secret: secret})
	return as
}

// counter counts Options.OnCall's reports by result.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) onCall(result string, _ time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[result]++
}

func (c *counter) get(result string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[result]
}

// newClient returns a Client of as's introspection endpoint, with cfg changed by mut
// and the clock clk (nil: the real one), closed at the end of the test.
func newClient(t testing.TB, endpoint string, clk *testclock.Clock, mut func(*introspect.Config), calls *counter) *introspect.Client {
	t.Helper()
	cfg := introspect.Config{Endpoint: endpoint, ClientID: clientID, ClientSecret: []byte(secret)}
	if mut != nil {
		mut(&cfg)
	}
	var opts introspect.Options
	if clk != nil {
		opts.Now = clk.Now
	}
	if calls != nil {
		opts.OnCall = calls.onCall
	}
	c, err := introspect.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// introspect calls c with a bounded context.
func introspectOnce(t testing.TB, c *introspect.Client, token string) (*introspect.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Introspect(ctx, token)
}

// mustActive introspects token and fails unless it is active.
func mustActive(t testing.TB, c *introspect.Client, token string) *introspect.Result {
	t.Helper()
	res, err := introspectOnce(t, c, token)
	if err != nil || res == nil || !res.Active {
		t.Fatalf("want an active result, got %+v, %v", res, err)
	}
	return res
}

// mustInactive introspects token and fails unless it is inactive.
func mustInactive(t testing.TB, c *introspect.Client, token string) {
	t.Helper()
	res, err := introspectOnce(t, c, token)
	if !errors.Is(err, introspect.ErrInactive) || errors.Is(err, introspect.ErrUnavailable) || res != nil {
		t.Fatalf("want ErrInactive and no result, got %+v, %v", res, err)
	}
}

// endpoint starts an httptest server with handler h; the test closes it.
func endpoint(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
