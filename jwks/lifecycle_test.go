package jwks_test

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/jwks"
)

func TestZeroOptionsWork(t *testing.T) {
	// Options{} is enough: logs go to slog.Default(), the clock is time.Now, nothing is
	// counted.
	var buf e2etest.LockedBuffer
	orig, out, flags := slog.Default(), log.Writer(), log.Flags()
	defer func() {
		// SetDefault also sent the log package's output to the handler: undo both.
		slog.SetDefault(orig)
		log.SetOutput(out)
		log.SetFlags(flags)
	}()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	srv := lightServer(t)
	set, err := jwks.New(context.Background(), jwks.Config{Issuer: srv.Issuer}, jwks.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	ready(t, set)
	if err := verify(context.Background(), set, srv.MustMint(nil)); err != nil {
		t.Fatal(err)
	}
	if st := set.Status(); time.Since(st.LastSuccess) > time.Hour || st.LastSuccess.After(time.Now()) {
		t.Fatalf("last success %s is not on the wall clock", st.LastSuccess)
	}
	if !strings.Contains(buf.String(), "msg=\"keys loaded\" issuer="+srv.Issuer) {
		t.Fatalf("slog.Default() did not get the log lines:\n%s", buf.String())
	}
}

func TestStatusOfAFileSource(t *testing.T) {
	srv := lightServer(t)
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, srv.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	set := newSet(t, srv, func(c *jwks.Config) { c.JWKSFile = file })
	ready(t, set)
	if st := set.Status(); st.JWKSURI != "file:"+file || st.Keys != 2 || !st.Ready || st.LastError != nil {
		t.Fatalf("status %+v", st)
	}
}

func TestCloseWaitsForTheFetchInFlight(t *testing.T) {
	// Close returns once the Set's goroutines are done: a fetch in flight has been
	// cancelled and has recorded its outcome, which is not a failure of the issuer (no
	// error counted, nothing logged).
	var logs e2etest.LockedBuffer
	reg := prometheus.NewRegistry()
	m, err := jwks.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	o := newOrigin(t, lightServer(t))
	o.set(func(o *origin) { o.gate = make(chan struct{}) }) // never opened
	set := newSet(t, o.keys, func(c *jwks.Config) { c.Issuer, c.JWKSURI = o.URL, o.JWKSURI() }, func(opts *jwks.Options) {
		opts.Metrics = m
		opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	o.next(t, 10*time.Second) // the first load is at the server, held
	set.Close()
	if err := set.Status().LastError; !errors.Is(err, context.Canceled) {
		t.Fatalf("last error right after Close: %v, want the cancelled fetch's", err)
	}
	if n := metricValue(t, reg, "tokengate_jwks_refreshes_total", map[string]string{"result": "error", "trigger": "startup"}); n != 0 {
		t.Fatalf("a fetch cancelled by Close counted as %v errors", n)
	}
	if strings.Contains(logs.String(), "failed") {
		t.Fatalf("a fetch cancelled by Close was logged:\n%s", logs.String())
	}
}
