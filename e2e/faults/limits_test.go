//go:build e2e

package faults

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
)

// The limits a hostile client meets at the sidecar's listener (docs/operations.md,
// "Limits"). The values are the sidecar's: 64 KiB of request line and headers,
// tokens.maxBytes 8 KiB, a ReadHeaderTimeout of 10 s.
const (
	maxHeaderBytes    = 64 << 10
	readHeaderTimeout = 10 * time.Second
)

// rawStatus sends a request with the given headers and returns the status.
func rawStatus(t *testing.T, url string, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestHeaderAndPathLimits(t *testing.T) {
	as := authServer(t)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, "")})
	tok := valid(as)
	auth := func(extra ...string) http.Header {
		h := http.Header{"Authorization": {"Bearer " + tok}}
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	reached := func() int { return up.Count() }

	// Headers: a large but legal header passes; past the limit, 431 before any work.
	if code := rawStatus(t, sc.URL+"/orders/1", auth("X-Large", strings.Repeat("a", 32<<10))); code != 200 {
		t.Fatalf("a 32 KiB header: %d", code)
	}
	before := reached()
	if code := rawStatus(t, sc.URL+"/orders/1", auth("X-Huge", strings.Repeat("a", maxHeaderBytes+8<<10))); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 72 KiB header: %d, want 431", code)
	}
	// Paths count toward the same limit.
	if code := rawStatus(t, sc.URL+"/orders/"+strings.Repeat("p", 8<<10), auth()); code != 200 {
		t.Fatalf("an 8 KiB path: %d", code)
	}
	if code := rawStatus(t, sc.URL+"/orders/"+strings.Repeat("p", maxHeaderBytes+8<<10), auth()); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 72 KiB path: %d, want 431", code)
	}
	if n := reached() - before; n != 1 {
		t.Fatalf("%d requests reached the upstream, want 1 (the 8 KiB path)", n)
	}

	// Tokens: larger than tokens.maxBytes is malformed, refused before it is decoded.
	big := strings.Repeat("e", 3000) + "." + strings.Repeat("e", 3000) + "." + strings.Repeat("e", 3000)
	req, _ := http.NewRequest("GET", sc.URL+"/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+big)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("a 9 KiB token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	m := sc.Metrics(t)
	if n := e2etest.Sum(m, "tokengate_decisions_total", `reason="malformed_token"`); n != 1 {
		t.Fatalf("malformed_token decisions: %v", n)
	}
	if reached()-before != 1 {
		t.Fatal("the oversized token reached the upstream")
	}
	t.Logf("limits: 32 KiB header 200, 72 KiB header 431, 8 KiB path 200, 72 KiB path 431, 9 KiB token 401 malformed_token; %d of 5 reached the upstream (the two within the limits)", reached()-before+1)
}

// openFiles is the limit of open files of this process, which the idle-connection test
// stays well under (the sidecar inherits it).
func openFiles() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 1024
	}
	return r.Cur
}

func TestSlowloris(t *testing.T) {
	t.Parallel()
	as := authServer(t)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, "")})

	// A client that sends its headers one line a second never finishes them: the
	// sidecar closes the connection ReadHeaderTimeout after it began reading.
	conn, err := net.Dial("tcp", sc.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := fmt.Fprintf(conn, "GET /orders/1 HTTP/1.1\r\nHost: %s\r\n", sc.Listen); err != nil {
		t.Fatal(err)
	}
	closed := make(chan time.Duration, 1)
	go func() {
		// The reader sees the close (EOF or a reset); it is bounded by a deadline.
		_ = conn.SetReadDeadline(time.Now().Add(readHeaderTimeout + 10*time.Second))
		_, err := io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			closed <- -1
			return
		}
		closed <- time.Since(start)
	}()
	var took time.Duration
	for i := 0; ; i++ {
		select {
		case took = <-closed:
		case <-time.After(time.Second):
			if i > 30 {
				t.Fatal("the drip did not end")
			}
			_, _ = fmt.Fprintf(conn, "X-Drip-%d: x\r\n", i)
			// Meanwhile, the sidecar serves others.
			if code, _, err := get(sc.URL+"/orders/1", valid(as)); err != nil || code != 200 {
				t.Fatalf("a valid request during the slowloris: %d %v", code, err)
			}
			continue
		}
		break
	}
	if took < 0 {
		t.Fatal("the sidecar kept a dripping connection open past ReadHeaderTimeout")
	}
	if took < readHeaderTimeout-time.Second || took > readHeaderTimeout+3*time.Second {
		t.Fatalf("the dripping connection was closed after %s, want about %s", took, readHeaderTimeout)
	}
	t.Logf("slowloris: a connection sending a header line a second closed after %s (ReadHeaderTimeout %s); valid requests answered 200 meanwhile", took.Round(100*time.Millisecond), readHeaderTimeout)
}

func TestManyIdleConnections(t *testing.T) {
	t.Parallel()
	as := authServer(t)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, "")})
	tok := valid(as)
	if code, _, _ := get(sc.URL+"/orders/1", tok); code != 200 {
		t.Fatal(code)
	}
	goroutines := func() float64 { return e2etest.Sum(sc.Metrics(t), "go_goroutines") }
	base := goroutines()

	n := min(2000, int(openFiles()/4))
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	opened := time.Now()
	for range n {
		c, err := net.Dial("tcp", sc.Listen)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	e2etest.Eventually(t, 5*time.Second, "the idle connections to be accepted", func() bool { return goroutines() >= base+float64(n) })
	held := goroutines()

	// Valid traffic is served while they sit there.
	var lat []time.Duration
	for range 200 {
		code, d, err := get(sc.URL+"/orders/1", tok)
		if err != nil || code != 200 {
			t.Fatalf("a valid request beside %d idle connections: %d %v", n, code, err)
		}
		lat = append(lat, d)
	}
	var worst time.Duration
	for _, d := range lat {
		worst = max(worst, d)
	}

	// Each is closed by the sidecar ReadHeaderTimeout after it was accepted.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stillOpen int
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(opened.Add(readHeaderTimeout + 5*time.Second))
			_, err := bufio.NewReader(c).ReadByte()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				mu.Lock()
				stillOpen++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	closedAfter := time.Since(opened)
	if stillOpen > 0 {
		t.Fatalf("%d of %d idle connections still open %s after they were opened", stillOpen, n, closedAfter)
	}
	e2etest.Eventually(t, 5*time.Second, "goroutines back to the baseline", func() bool { return goroutines() <= base+2 })
	t.Logf("%d idle connections: goroutines %v → %v → %v; all closed by the sidecar within %s; 200 valid requests meanwhile, slowest %s (open files limit %d)",
		n, base, held, goroutines(), closedAfter.Round(100*time.Millisecond), worst.Round(time.Microsecond), openFiles())
}
