//go:build e2e

package redisstore_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/redistest"
	"github.com/tokengate/tokengate/replay/redisstore"
)

// The tests against a real redis-server (Debian's, installed by tools/debs; CI runs them
// with the e2e suites): go test -tags e2e ./replay/redisstore/

// use calls Use and fails the test on an error.
func use(t testing.TB, s *redisstore.Store, key string, exp time.Time) bool {
	t.Helper()
	first, err := s.Use(context.Background(), key, exp)
	if err != nil {
		t.Fatalf("Use(%q): %v", key, err)
	}
	return first
}

func TestFirstUseOnly(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second})
	exp := time.Now().Add(time.Minute)
	if !use(t, s, "iss|a", exp) {
		t.Fatal("first use refused")
	}
	if use(t, s, "iss|a", exp) {
		t.Fatal("second use allowed")
	}
	if !use(t, s, "iss|b", exp) {
		t.Fatal("another key refused")
	}
	// What Redis holds: the prefixed key, expiring at exp (rounded up to the ms).
	if got, err := srv.Do("PEXPIRETIME", redisstore.DefaultKeyPrefix+"iss|a"); err != nil || got != strconv.FormatInt(exp.UnixMilli()+1, 10) && got != strconv.FormatInt(exp.UnixMilli(), 10) {
		t.Fatalf("PEXPIRETIME: %q %v, want about %d", got, err, exp.UnixMilli())
	}
	// A store with another prefix does not see these records.
	other := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, KeyPrefix: "other:"})
	if !use(t, other, "iss|a", exp) {
		t.Fatal("a store with another prefix saw the record")
	}
	if got, _ := srv.Do("EXISTS", "other:iss|a"); got != "1" {
		t.Fatalf("EXISTS other:iss|a = %s", got)
	}

	// The key bound: MaxKeyLength passes, one byte more is refused without asking.
	long := strings.Repeat("k", redisstore.MaxKeyLength)
	if !use(t, s, long, exp) || use(t, s, long, exp) {
		t.Fatal("a key of MaxKeyLength is not recorded once")
	}
	first, err := s.Use(context.Background(), long+"k", exp)
	if first || !errors.Is(err, redisstore.ErrKeyTooLong) || errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("a key over MaxKeyLength: %v %v", first, err)
	}
	if got, _ := srv.Do("EXISTS", redisstore.DefaultKeyPrefix+long+"k"); got != "0" {
		t.Fatal("a key over MaxKeyLength was stored")
	}
}

// A use is one command, so one round trip: Redis counts one SET per use and nothing
// else, whether the use is first, a replay or expired.
func TestOneCommandPerUse(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second})
	if err := s.Ping(context.Background()); err != nil { // connect first
		t.Fatal(err)
	}
	if _, err := srv.Do("CONFIG", "RESETSTAT"); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Minute)
	for i := range 10 {
		use(t, s, fmt.Sprint(i%5), exp)
	}
	use(t, s, "old", time.Now().Add(-time.Minute))
	stats, err := srv.Do("INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for line := range strings.Lines(stats) {
		if name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls="); ok {
			calls, _, _ := strings.Cut(rest, ",")
			cmds = append(cmds, strings.TrimPrefix(name, "cmdstat_")+"="+calls)
		}
	}
	// CONFIG RESETSTAT is the test's own (INFO counts itself after it answers).
	slices.Sort(cmds)
	if got := fmt.Sprint(cmds); got != "[config|resetstat=1 set=11]" {
		t.Fatalf("Redis counted %s for 11 uses", got)
	}
}

// Expiry follows replay.Memory: a record lives until exp, a use whose exp has passed is
// a first use that is not remembered, unless a live record of the key exists.
func TestExpiry(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second})

	past := time.Now().Add(-time.Second)
	for i, exp := range []time.Time{past, past, time.Unix(0, 0), {}} {
		if !use(t, s, "old", exp) {
			t.Fatalf("use %d: an expired use was remembered", i)
		}
	}
	if got, _ := srv.Do("EXISTS", redisstore.DefaultKeyPrefix+"old"); got != "0" {
		t.Fatalf("an expired use left a record: EXISTS = %s", got)
	}
	live := time.Now().Add(time.Minute)
	if !use(t, s, "live", live) || use(t, s, "live", past) {
		t.Fatal("a use with a past exp went through a live record")
	}

	// A record that expires soon: refused until then, a first use again after.
	soon := time.Now().Add(300 * time.Millisecond)
	if !use(t, s, "soon", soon) {
		t.Fatal("first use refused")
	}
	if use(t, s, "soon", soon) && time.Now().Before(soon) {
		t.Fatal("second use allowed before exp")
	}
	e2etest.Eventually(t, 5*time.Second, "the record to expire", func() bool {
		return use(t, s, "soon", time.Now().Add(time.Minute))
	})
	if time.Now().Before(soon) {
		t.Fatal("the record expired before its exp")
	}
	if use(t, s, "soon", time.Now().Add(time.Minute)) {
		t.Fatal("the renewed record allowed a second use")
	}
}

// Two replicas, each with its own Store, share one Redis: of 1000 concurrent uses of
// one key, exactly one is first.
func TestConcurrentUsesFromTwoReplicasOneWinner(t *testing.T) {
	srv := redistest.Start(t)
	// The timeout is generous: the test is about atomicity, on a busy machine with the
	// race detector.
	cfg := redisstore.Config{Addrs: []string{srv.Addr()}, Timeout: 10 * time.Second}
	replicas := []*redisstore.Store{newStore(t, cfg), newStore(t, cfg)}
	for round := range 3 {
		key := fmt.Sprintf("jti-%d", round)
		exp := time.Now().Add(time.Minute)
		var wins, errs atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 1000 {
			wg.Go(func() {
				<-start
				first, err := replicas[i%2].Use(context.Background(), key, exp)
				switch {
				case err != nil:
					errs.Add(1)
					t.Error(err)
				case first:
					wins.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || errs.Load() != 0 {
			t.Fatalf("round %d: %d first uses of one key, %d errors", round, wins.Load(), errs.Load())
		}
	}
}

// A Redis that is down: every use is an error within the timeout, none is first, and
// the same Store works again once Redis is back, without a restart.
func TestOutageFailsClosedAndRecovers(t *testing.T) {
	const timeout = 50 * time.Millisecond
	srv := redistest.Start(t)
	s := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Timeout: timeout})
	exp := time.Now().Add(time.Minute)
	if !use(t, s, "before", exp) {
		t.Fatal("first use refused")
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	srv.Stop()
	for i := range 50 {
		assertRefused(t, s, fmt.Sprintf("during-%d", i), exp, timeout)
	}
	// Concurrent uses meet the outage as well.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { assertRefused(t, s, fmt.Sprintf("concurrent-%d", i), exp, timeout) })
	}
	wg.Wait()
	if err := s.Ping(context.Background()); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("Ping during the outage: %v", err)
	}

	srv.Start() // the same port, an empty Redis
	e2etest.Eventually(t, 10*time.Second, "uses to work again", func() bool {
		first, err := s.Use(context.Background(), "after", exp)
		return err == nil && first
	})
	if use(t, s, "after", exp) {
		t.Fatal("second use allowed after the outage")
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping after the outage: %v", err)
	}
}

// A Store made while Redis is down, as a sidecar that starts first: uses fail until
// Redis comes up, then work.
func TestRedisDownAtStart(t *testing.T) {
	const timeout = 50 * time.Millisecond
	srv := redistest.Start(t)
	srv.Stop()
	s := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Timeout: timeout})
	exp := time.Now().Add(time.Minute)
	for i := range 10 {
		assertRefused(t, s, fmt.Sprint(i), exp, timeout)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("Ping while Redis is down: %v", err)
	}
	srv.Start()
	e2etest.Eventually(t, 10*time.Second, "uses to work", func() bool {
		first, err := s.Use(context.Background(), "k", exp)
		return err == nil && first
	})
}

// A Redis that answers too late: each use is an error soon after the timeout, never
// first, and uses work again once Redis answers.
func TestSlowRedisTimesOut(t *testing.T) {
	const timeout = 50 * time.Millisecond
	srv := redistest.Start(t)
	s := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Timeout: timeout})
	exp := time.Now().Add(time.Minute)
	if !use(t, s, "before", exp) {
		t.Fatal("first use refused")
	}
	srv.Pause(2 * time.Second)
	for i := range 5 {
		assertTimedOut(t, s, fmt.Sprintf("serial-%d", i), exp, timeout)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() { assertTimedOut(t, s, fmt.Sprintf("concurrent-%d", i), exp, timeout) })
	}
	wg.Wait()
	start := time.Now()
	if err := s.Ping(context.Background()); !errors.Is(err, redisstore.ErrUnavailable) || time.Since(start) > 10*timeout {
		t.Fatalf("Ping while Redis is paused: %v after %s", err, time.Since(start))
	}
	e2etest.Eventually(t, 10*time.Second, "uses to work again", func() bool {
		first, err := s.Use(context.Background(), "after", exp)
		return err == nil && first
	})
}

// The caller's context bounds a use as well as the timeout does.
func TestUseHonoursTheContext(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	first, err := s.Use(ctx, "k", time.Now().Add(time.Minute))
	if first || !errors.Is(err, redisstore.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("a use with a cancelled context: %v %v", first, err)
	}
	if got, _ := srv.Do("EXISTS", redisstore.DefaultKeyPrefix+"k"); got != "0" {
		t.Fatal("a use with a cancelled context was recorded")
	}
}

func TestAuthentication(t *testing.T) {
	exp := time.Now().Add(time.Minute)
	for _, tc := range []struct {
		name string
		srv  redistest.Options
	}{
		{"ACL user", redistest.Options{User: "tokengate", Password: "s3cret"}},
		{"requirepass", redistest.Options{Password: "s3cret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.StartWith(t, tc.srv)
			good := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Username: tc.srv.User, Password: tc.srv.Password, Timeout: time.Second})
			if !use(t, good, "k", exp) || use(t, good, "k", exp) {
				t.Fatal("the right credentials do not record once")
			}
			if err := good.Ping(context.Background()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			for name, cfg := range map[string]redisstore.Config{
				"a wrong password": {Addrs: []string{srv.Addr()}, Username: tc.srv.User, Password: "wrong", Timeout: time.Second},
				"no credentials":   {Addrs: []string{srv.Addr()}, Timeout: time.Second},
			} {
				bad := newStore(t, cfg)
				for range 2 { // the first use makes the client, the second uses it
					first, err := bad.Use(context.Background(), "k2", exp)
					if first || !errors.Is(err, redisstore.ErrUnavailable) {
						t.Fatalf("%s: %v %v", name, first, err)
					}
					if msg := err.Error(); !strings.Contains(msg, "WRONGPASS") && !strings.Contains(msg, "NOAUTH") && !strings.Contains(msg, "NOPERM") {
						t.Errorf("%s: the error does not say why: %v", name, err)
					}
				}
				if err := bad.Ping(context.Background()); !errors.Is(err, redisstore.ErrUnavailable) {
					t.Errorf("%s: Ping: %v", name, err)
				}
			}
		})
	}
}

// An ACL user confined to the prefix's keys and the commands the store sends, as
// docs/operations.md advises, is enough.
func TestLeastPrivilegeACL(t *testing.T) {
	srv := redistest.Start(t)
	if _, err := srv.Do("ACL", "SETUSER", "replay", "on", ">pw", "resetkeys", "~"+redisstore.DefaultKeyPrefix+"*", "resetchannels", "-@all", "+set", "+ping", "+hello", "+auth", "+client"); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Username: "replay", Password: "pw", Timeout: time.Second})
	exp := time.Now().Add(time.Minute)
	if !use(t, s, "k", exp) || use(t, s, "k", exp) {
		t.Fatal("the least-privilege user does not record once")
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	// A prefix outside the user's keys: Redis refuses, and the store fails closed.
	other := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Username: "replay", Password: "pw", Timeout: time.Second, KeyPrefix: "elsewhere:"})
	if first, err := other.Use(context.Background(), "k", exp); first || !errors.Is(err, redisstore.ErrUnavailable) || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("a key outside the ACL: %v %v", first, err)
	}
}

func TestTLS(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{TLS: true, User: "tokengate", Password: "pw"})
	s := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Username: "tokengate", Password: "pw", TLS: srv.TLSConfig(), Timeout: time.Second})
	exp := time.Now().Add(time.Minute)
	if !use(t, s, "k", exp) || use(t, s, "k", exp) {
		t.Fatal("not recorded once over TLS")
	}
	// A client that does not trust the server's certificate, and one without TLS,
	// fail closed.
	for name, cfg := range map[string]*tls.Config{"an untrusted certificate": {MinVersion: tls.VersionTLS12}, "plain TCP": nil} {
		bad := newStore(t, redisstore.Config{Addrs: []string{srv.Addr()}, Username: "tokengate", Password: "pw", TLS: cfg, Timeout: 200 * time.Millisecond})
		if first, err := bad.Use(context.Background(), "k2", exp); first || !errors.Is(err, redisstore.ErrUnavailable) {
			t.Errorf("%s: %v %v", name, first, err)
		}
	}
}

func TestCluster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, redistest.Options{})
	addrs := []string{nodes[0].Addr(), nodes[1].Addr(), nodes[2].Addr()}
	// The least-privilege user of docs/operations.md, with what Cluster adds.
	for _, n := range nodes {
		if _, err := n.Do("ACL", "SETUSER", "replay", "on", ">pw", "resetkeys", "~"+redisstore.DefaultKeyPrefix+"*", "resetchannels", "-@all", "+set", "+ping", "+hello", "+auth", "+client", "+cluster|slots", "+cluster|shards"); err != nil {
			t.Fatal(err)
		}
	}
	a := newStore(t, redisstore.Config{Addrs: addrs, Username: "replay", Password: "pw", Timeout: 5 * time.Second})
	// A listed node that does not answer: one that answers is enough to learn the
	// others.
	b := newStore(t, redisstore.Config{Addrs: []string{e2etest.FreeAddr(t), addrs[1]}, Username: "replay", Password: "pw", Timeout: 5 * time.Second})
	exp := time.Now().Add(time.Minute)
	for i := range 30 {
		key := fmt.Sprint("jti-", i)
		if !use(t, a, key, exp) || use(t, a, key, exp) || use(t, b, key, exp) {
			t.Fatalf("%s is not recorded once", key)
		}
	}
	// The keys are spread over the nodes.
	for _, n := range nodes {
		if got, err := n.Do("DBSIZE"); err != nil || got == "0" {
			t.Errorf("node %s holds %s keys (%v)", n.Addr(), got, err)
		}
	}
	if err := a.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	// Several addresses that are not a cluster are refused, and say why.
	plain := []*redistest.Server{redistest.Start(t), redistest.Start(t)}
	notCluster := newStore(t, redisstore.Config{Addrs: []string{plain[0].Addr(), plain[1].Addr()}, Timeout: time.Second})
	if first, err := notCluster.Use(context.Background(), "k", exp); first || !errors.Is(err, redisstore.ErrUnavailable) || !strings.Contains(err.Error(), "cluster") {
		t.Fatalf("several servers that are not a cluster: %v %v", first, err)
	}
}

func TestSentinel(t *testing.T) {
	master := redistest.StartWith(t, redistest.Options{Password: "pw"})
	sentinel := redistest.StartSentinel(t, master, "main")
	s := newStore(t, redisstore.Config{Addrs: []string{sentinel.Addr()}, MasterName: "main", Password: "pw", Timeout: 5 * time.Second})
	exp := time.Now().Add(time.Minute)
	if !use(t, s, "k", exp) || use(t, s, "k", exp) {
		t.Fatal("not recorded once through Sentinel")
	}
	if got, _ := master.Do("EXISTS", redisstore.DefaultKeyPrefix+"k"); got != "1" {
		t.Fatal("the record is not on the master")
	}
	unknown := newStore(t, redisstore.Config{Addrs: []string{sentinel.Addr()}, MasterName: "other", Password: "pw", Timeout: time.Second})
	if first, err := unknown.Use(context.Background(), "k", exp); first || !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("a master the Sentinel does not know: %v %v", first, err)
	}
}

// Close ends every goroutine the store and its client started, even with a
// connection attempt in flight, and a use after Close fails.
func TestClose(t *testing.T) {
	srv := redistest.Start(t)
	ignore := goleak.IgnoreCurrent()
	s, err := redisstore.New(redisstore.Config{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 100 { // concurrent uses: rueidis pipelines them on background goroutines
		wg.Go(func() { s.Use(context.Background(), fmt.Sprint(i), time.Now().Add(time.Minute)) })
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if first, err := s.Use(context.Background(), "k", time.Now().Add(time.Minute)); first || !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("a use after Close: %v %v", first, err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("Ping after Close: %v", err)
	}
	goleak.VerifyNone(t, ignore)

	// Closed while its first connection attempt waits on a server that is paused.
	srv.Pause(time.Second)
	s, err = redisstore.New(redisstore.Config{Addrs: []string{srv.Addr()}, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if first, err := s.Use(ctx, "k", time.Now().Add(time.Minute)); first || err == nil {
		t.Fatalf("a use against a paused server: %v %v", first, err)
	}
	s.Close()
	goleak.VerifyNone(t, ignore)
}

// assertRefused checks that a use fails with ErrUnavailable, soon.
func assertRefused(t *testing.T, s *redisstore.Store, key string, exp time.Time, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	first, err := s.Use(context.Background(), key, exp)
	took := time.Since(start)
	if first || !errors.Is(err, redisstore.ErrUnavailable) {
		t.Errorf("a use during an outage: %v %v", first, err)
	}
	// Timeout plus a margin for a busy machine with the race detector.
	if took > timeout+500*time.Millisecond {
		t.Errorf("a use during an outage took %s, timeout %s", took, timeout)
	}
}

// assertTimedOut checks that a use fails with ErrUnavailable and DeadlineExceeded,
// not long after the timeout.
func assertTimedOut(t *testing.T, s *redisstore.Store, key string, exp time.Time, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	first, err := s.Use(context.Background(), key, exp)
	took := time.Since(start)
	if first || !errors.Is(err, redisstore.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a use against a slow Redis: %v %v", first, err)
	}
	if took < timeout-5*time.Millisecond || took > 10*timeout {
		t.Errorf("a use against a slow Redis took %s, timeout %s", took, timeout)
	}
}
