package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokengate/tokengate/replay/redisstore"
)

// Every test closes its stores: no goroutine of the client library may remain, but
// two that rueidis starts, does not stop on Close, and ends by itself. After a
// Cluster's topology changes (here: a listed address that is not a node), it closes
// the connections to nodes that left 5 s later (rueidis PR 211: commands in flight on
// them may finish). And a command that fails on a Cluster schedules a lazy topology
// refresh after a random delay of up to about a second (cluster.go lazyRefresh, a
// DelayDo goroutine asleep in time.Sleep), which a CI run under coverage met after the
// last test (goleak's own retries are shorter than that sleep on a loaded machine).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"))
}

// newStore returns a Store for cfg, closed when the test ends.
func newStore(t testing.TB, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// A service that imports only middleware, jwks and replay builds no Redis client: the
// client library is this package's alone.
func TestOnlyThisPackageBuildsRedis(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test=false",
		"github.com/tokengate/tokengate/middleware",
		"github.com/tokengate/tokengate/jwks",
		"github.com/tokengate/tokengate/replay").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for pkg := range strings.Lines(string(out)) {
		if strings.HasPrefix(pkg, "github.com/redis/") {
			t.Errorf("middleware, jwks or replay builds %s", strings.TrimSpace(pkg))
		}
	}
}

func TestNewRefusesABadConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    redisstore.Config
		fields []string // every field named, in order
	}{
		{"no address", redisstore.Config{}, []string{"Addrs"}},
		{"not host:port", redisstore.Config{Addrs: []string{"redis"}}, []string{"Addrs[0]"}},
		{"no host", redisstore.Config{Addrs: []string{":6379"}}, []string{"Addrs[0]"}},
		{"bad ports", redisstore.Config{Addrs: []string{"a:0", "b:65536", "c:x"}}, []string{"Addrs[0]", "Addrs[1]", "Addrs[2]"}},
		{"an address twice", redisstore.Config{Addrs: []string{"a:1", "a:1"}}, []string{"Addrs[1]"}},
		{"spaces around the master's name", redisstore.Config{Addrs: []string{"a:1"}, MasterName: "main "}, []string{"MasterName"}},
		{"a newline in the credentials", redisstore.Config{Addrs: []string{"a:1"}, Username: "u\n", Password: "p\r\n"}, []string{"Username", "Password"}},
		{"a negative timeout", redisstore.Config{Addrs: []string{"a:1"}, Timeout: -time.Second}, []string{"Timeout"}},
		{"a long prefix", redisstore.Config{Addrs: []string{"a:1"}, KeyPrefix: strings.Repeat("p", 257)}, []string{"KeyPrefix"}},
		{"every problem at once", redisstore.Config{Addrs: []string{"x"}, Timeout: -1, Password: "p\n"}, []string{"Addrs[0]", "Password", "Timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstore.New(tc.cfg)
			if s != nil || err == nil {
				t.Fatalf("New accepted %+v", tc.cfg)
			}
			var got []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var ce *redisstore.ConfigError
				if !errors.As(e, &ce) {
					t.Fatalf("%v is not a *ConfigError", e)
				}
				if ce.Problem == "" || !strings.HasPrefix(e.Error(), "redisstore: "+ce.Field+": ") {
					t.Errorf("error %q", e)
				}
				got = append(got, ce.Field)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.fields) {
				t.Errorf("problems with %v, want %v: %v", got, tc.fields, err)
			}
		})
	}
	// The good ones, which New takes without contacting anything.
	for _, cfg := range []redisstore.Config{
		{Addrs: []string{"redis:6379"}},
		{Addrs: []string{"[::1]:6379"}, Username: "tokengate", Password: "pw", Timeout: time.Second, KeyPrefix: "p:"},
		{Addrs: []string{"n1:7000", "n2:7000", "n3:7000"}},
		{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "main"},
		// The bounds themselves: the highest port, the longest prefix.
		{Addrs: []string{"redis:65535", "redis:1"}, KeyPrefix: strings.Repeat("p", 256)},
	} {
		s, err := redisstore.New(cfg)
		if err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
			continue
		}
		if s.Name() != "redis" {
			t.Errorf("Name() = %q", s.Name())
		}
		s.Close()
	}
}

// New must not contact Redis: a sidecar starts while Redis is down. A listener that
// stands for Redis has no connection waiting after New; the first Use makes one.
func TestNewDoesNotConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := newStore(t, redisstore.Config{Addrs: []string{ln.Addr().String()}, Timeout: 2 * time.Second})
	ln.(*net.TCPListener).SetDeadline(time.Now())
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("New connected to Redis")
	}
	ln.(*net.TCPListener).SetDeadline(time.Time{})

	// The listener never answers: the use times out, and the attempt is there.
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if first, err := s.Use(ctx, "k", time.Now().Add(time.Minute)); first || !errors.Is(err, redisstore.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a use against a silent server: %v %v", first, err)
	}
	c, ok := <-accepted
	if !ok {
		t.Fatal("the first use did not connect")
	}
	c.Close()
}
