package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
)

// StartCluster starts n Redis Cluster nodes (n ≥ 1) with o, gives each an equal share
// of the 16384 hash slots, introduces them to each other, and returns once every node
// says the cluster is ok. They are primaries without replicas.
func StartCluster(t testing.TB, n int, o Options) []*Server {
	t.Helper()
	if n < 1 {
		t.Fatalf("redistest: a cluster of %d nodes", n)
	}
	o.Cluster = true
	nodes := make([]*Server, n)
	for i := range nodes {
		nodes[i] = StartWith(t, o)
	}
	const slots = 16384
	for i, s := range nodes {
		from, to := i*slots/n, (i+1)*slots/n-1
		if _, err := s.Do("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(from), strconv.Itoa(to)); err != nil {
			t.Fatalf("redistest: CLUSTER ADDSLOTSRANGE on %s: %v", s.Addr(), err)
		}
		if i > 0 {
			if _, err := s.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(nodes[0].port), strconv.Itoa(nodes[0].busPort)); err != nil {
				t.Fatalf("redistest: CLUSTER MEET from %s: %v", s.Addr(), err)
			}
		}
	}
	known := fmt.Sprintf("cluster_known_nodes:%d", n)
	e2etest.Eventually(t, 30*time.Second, "every cluster node to say cluster_state:ok", func() bool {
		for _, s := range nodes {
			info, err := s.Do("CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, known) {
				return false
			}
		}
		return true
	})
	return nodes
}

// StartSentinel starts a Redis Sentinel that monitors master under the name name (with
// a quorum of one), and returns once it knows the master's address. It authenticates
// to the master as master's Options say; the Sentinel itself asks for no password.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir(), log: &e2etest.LockedBuffer{}, mode: "--sentinel"}
	conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\n", name, master.port)
	if master.opts.Password != "" {
		conf += fmt.Sprintf("sentinel auth-pass %s %s\n", name, master.opts.Password)
	}
	if master.opts.User != "" {
		conf += fmt.Sprintf("sentinel auth-user %s %s\n", name, master.opts.User)
	}
	// Sentinel rewrites its configuration file: it lives in the server's directory.
	s.conf = filepath.Join(s.dir, "sentinel.conf")
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s.launch(t)
	want := "127.0.0.1 " + strconv.Itoa(master.port)
	e2etest.Eventually(t, 10*time.Second, "the Sentinel to know the master", func() bool {
		addr, err := s.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
		return err == nil && addr == want
	})
	return s
}
