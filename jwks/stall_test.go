package jwks_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/jwks"
)

func TestATLSHandshakeThatStallsIsCutAtFiveSeconds(t *testing.T) {
	// Every phase of a fetch has its own bound: a key server that accepts the connection
	// and never answers the TLS handshake is given up on after 5 s, even when the whole
	// fetch may take HTTPTimeout (30 s here).
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never written to
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})

	url := "https://" + ln.Addr().String()
	start := time.Now()
	set, err := jwks.New(context.Background(), jwks.Config{Issuer: url, JWKSURI: url + "/jwks", HTTPTimeout: 30 * time.Second}, jwks.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	err = set.Refresh(ctx) // shares the first fetch, in flight since New
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "TLS handshake timeout") || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Refresh = %v after %s, want the TLS handshake's own timeout", err, took)
	}
	if took < 4*time.Second {
		t.Fatalf("gave up after %s, before the 5 s bound", took)
	}
}
