//go:build e2e

package redistest_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/redistest"
)

func TestStopAndStartOnTheSamePort(t *testing.T) {
	s := redistest.Start(t)
	addr := s.Addr()
	if got, err := s.Do("SET", "k", "v"); err != nil || got != "OK" {
		t.Fatalf("SET: %q %v", got, err)
	}
	if got, err := s.Do("GET", "k"); err != nil || got != "v" {
		t.Fatalf("GET: %q %v", got, err)
	}
	s.Stop()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("a stopped server answered PING")
	}
	s.Stop() // a second Stop does nothing
	s.Start()
	if s.Addr() != addr {
		t.Fatalf("started again on %s, not %s", s.Addr(), addr)
	}
	// No persistence: the restarted server is empty.
	if got, err := s.Do("GET", "k"); err != nil || got != "(nil)" {
		t.Fatalf("GET after a restart: %q %v", got, err)
	}
}

func TestPauseHoldsCommands(t *testing.T) {
	s := redistest.Start(t)
	const d = 400 * time.Millisecond
	start := time.Now()
	s.Pause(d)
	got, err := s.Do("PING")
	if err != nil || got != "PONG" {
		t.Fatalf("PING after the pause: %q %v", got, err)
	}
	if took := time.Since(start); took < d-50*time.Millisecond {
		t.Fatalf("PING answered after %s, inside a %s pause", took, d)
	}
}

func TestAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    redistest.Options
	}{
		{"requirepass", redistest.Options{Password: "pw-1"}},
		{"ACL user", redistest.Options{User: "tokengate", Password: "pw-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := redistest.StartWith(t, tc.o)
			if got, err := s.Do("PING"); err != nil || got != "PONG" {
				t.Fatalf("PING as the server's user: %q %v", got, err)
			}
			// Without credentials, or with a wrong password, the server refuses.
			var re redistest.ReplyError
			if _, err := s.DoAs("", "", "PING"); !errors.As(err, &re) || !strings.HasPrefix(string(re), "NOAUTH") {
				t.Errorf("PING without credentials: %v", err)
			}
			if _, err := s.DoAs(tc.o.User, "wrong", "PING"); !errors.As(err, &re) || !strings.HasPrefix(string(re), "WRONGPASS") {
				t.Errorf("PING with a wrong password: %v", err)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	s := redistest.StartWith(t, redistest.Options{TLS: true, Password: "pw"})
	if got, err := s.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING over TLS: %q %v", got, err)
	}
	if s.TLSConfig() == nil || redistest.Start(t).TLSConfig() != nil {
		t.Fatal("TLSConfig does not say whether the server speaks TLS")
	}
	// Plain TCP gets nothing: the server speaks TLS only.
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("*1\r\n$4\r\nPING\r\n"))
	if n, _ := c.Read(make([]byte, 16)); n > 0 {
		t.Fatal("the TLS server answered plain TCP")
	}
}

func TestClusterAndSentinel(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, redistest.Options{})
	// A key on the wrong node is redirected: the slots are spread.
	moved := 0
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if _, err := nodes[0].Do("SET", k, "1"); err != nil {
			var re redistest.ReplyError
			if !errors.As(err, &re) || !strings.HasPrefix(string(re), "MOVED ") {
				t.Fatalf("SET %s: %v", k, err)
			}
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("node 0 holds every slot")
	}

	master := redistest.StartWith(t, redistest.Options{Password: "pw"})
	sentinel := redistest.StartSentinel(t, master, "main")
	e2etest.Eventually(t, 5*time.Second, "the Sentinel to see the master up", func() bool {
		flags, err := sentinel.Do("SENTINEL", "MASTER", "main")
		return err == nil && strings.Contains(flags, "flags master ")
	})
}
