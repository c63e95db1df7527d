package jwks_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quiet is a logger for tests that check behaviour, not log lines.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// server starts a jwkstest server that the test closes.
func server(t testing.TB, opts ...jwkstest.Option) *jwkstest.Server {
	t.Helper()
	s, err := jwkstest.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// newSet starts a Set for srv, with cfg changed by mut, closed at the end of the test.
func newSet(t testing.TB, srv *jwkstest.Server, mut func(*jwks.Config), opts ...func(*jwks.Options)) *jwks.Set {
	t.Helper()
	cfg := jwks.Config{Issuer: srv.Issuer}
	if mut != nil {
		mut(&cfg)
	}
	o := jwks.Options{Logger: quiet}
	for _, f := range opts {
		f(&o)
	}
	s, err := jwks.New(context.Background(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// ready waits (bounded) for the set's first load.
func ready(t testing.TB, s *jwks.Set) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// verify checks tok's signature with the key the set gives for it.
func verify(ctx context.Context, s *jwks.Set, tok string) error {
	_, err := jwt.NewParser(jwt.WithValidMethods(jwks.DefaultAlgorithms())).Parse(tok, s.Keyfunc(ctx))
	return err
}

// eventually waits for cond, for as long as a busy 2-core machine may need.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	e2etest.Eventually(t, 10*time.Second, what, cond)
}
