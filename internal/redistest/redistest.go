// Package redistest runs a real redis-server for tests: Debian's, as tools/debs pins
// it, on a free 127.0.0.1 port, with no persistence. A test can stop it and start it
// again on the same port (an outage), pause it (a server that does not answer in
// time), and talk to it directly with Do, through a small RESP client of its own, so
// that what a client library under test wrote is checked by something else.
//
// A missing redis-server fails the test with what to run: tests that need a real
// server never skip.
package redistest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
)

// Binary is Debian's redis-server, by absolute path: PATH may lead to another build.
const Binary = "/usr/bin/redis-server"

// startTimeout bounds how long a starting server may take to answer.
const startTimeout = 15 * time.Second

// Options of StartWith. The zero value is a server without authentication.
type Options struct {
	// Password is the password of the default user (requirepass), when User is empty.
	// With User, it is User's password, and the default user is disabled, so that a
	// connection that does not authenticate as User can do nothing.
	Password string
	// User is an ACL user allowed every command on every key.
	User string
	// Cluster makes the server a Redis Cluster node, with its cluster bus on another
	// free port. StartCluster makes a cluster of such nodes.
	Cluster bool
	// TLS makes the server speak TLS only, with a certificate for 127.0.0.1 from a CA
	// made for it; TLSConfig is a client's configuration that trusts that CA.
	TLS bool
}

// Server is a redis-server child process.
type Server struct {
	t       testing.TB
	opts    Options
	port    int
	busPort int // the cluster bus's port, with Options.Cluster
	tls     *tls.Config
	dir     string
	conf    string // a configuration file, first among the arguments; "" for none
	mode    string // "" or "--sentinel"

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *e2etest.LockedBuffer
}

// Start starts a redis-server without authentication and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith starts a redis-server with o and stops it when the test ends. When the
// test failed, the server's log is printed.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{t: t, opts: o, dir: t.TempDir(), log: &e2etest.LockedBuffer{}}
	if o.TLS {
		s.tls = writeCertificates(t, s.dir)
	}
	s.launch(t)
	return s
}

// launch starts s on a free port, and stops it when the test ends.
func (s *Server) launch(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("redistest: %s is missing (%v): run `tools/debs` as root from the repository's root; it installs the pinned redis-server", Binary, err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("redis-server on port %d:\n%s", s.port, s.log.String())
		}
	})
	// The port is free when chosen and taken by redis-server a moment later: another
	// process may take it in between. Then redis-server exits at once, and another
	// port is tried.
	var err error
	for range 3 {
		s.port = e2etest.FreePort(t)
		if s.opts.Cluster {
			s.busPort = e2etest.FreePort(t)
		}
		if err = s.start(); err == nil {
			return
		}
	}
	t.Fatalf("redistest: %v", err)
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// TLSConfig is a client's TLS configuration that trusts the server's certificate,
// nil when the server does not speak TLS. Each call returns a new copy.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.Clone()
}

// Port is the server's port.
func (s *Server) Port() int { return s.port }

// Start starts the server again, on the same port, after Stop: the end of an outage.
// It returns once the server answers. It does nothing when the server runs.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
}

// Stop kills the server, as a crash would, and waits for it to exit (SIGTERM would take
// Redis a second or two). The kernel closes its connections, and new ones are refused.
// It does nothing when the server does not run.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Pause makes the server hold every client's commands, new connections' handshakes
// included, for d (CLIENT PAUSE d ALL): a server that answers too late. It returns once
// the pause is in effect, and it ends by itself after d.
func (s *Server) Pause(d time.Duration) {
	s.t.Helper()
	if _, err := s.Do("CLIENT", "PAUSE", strconv.FormatInt(d.Milliseconds(), 10), "ALL"); err != nil {
		s.t.Fatalf("redistest: CLIENT PAUSE: %v", err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	if s.mode != "" {
		args = append(args, s.mode)
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
		"--loglevel", "notice",
	)
	switch {
	case s.opts.User != "":
		args = append(args, "--user", "default", "off",
			"--user", s.opts.User, "on", ">"+s.opts.Password, "~*", "&*", "+@all")
	case s.opts.Password != "":
		args = append(args, "--requirepass", s.opts.Password)
	}
	if s.opts.TLS {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", "server.pem", "--tls-key-file", "server-key.pem",
			"--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no")
	}
	if s.opts.Cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(s.busPort), "--cluster-node-timeout", "2000")
	}
	cmd := exec.Command(Binary, args...)
	cmd.Dir = s.dir
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", Binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	deadline := time.Now().Add(startTimeout)
	// The server that answers must be this one: on a port another process took first,
	// redis-server exits, and that other process (another test's Redis) may answer.
	pid := fmt.Sprintf("process_id:%d\r\n", cmd.Process.Pid)
	for {
		info, err := s.do(200*time.Millisecond, "INFO", "server")
		if err == nil && !strings.Contains(info, pid) {
			err = fmt.Errorf("another process answers on port %d", s.port)
		}
		if err == nil {
			s.cmd, s.done = cmd, done
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start (%s):\n%s", s.port, cmd.ProcessState, s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d did not answer PING within %s: %v\n%s", s.port, startTimeout, err, s.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Do sends one command on a connection of its own, authenticated as the Options say,
// and returns the reply: a simple or bulk string as it is, an integer in decimal, an
// array as its elements joined by spaces, a null as "(nil)". A Redis error reply is a
// ReplyError. It waits at most 5 s.
func (s *Server) Do(args ...string) (string, error) {
	return s.do(5*time.Second, args...)
}

// DoAs is Do authenticated as user with password instead (AUTH password when user is
// empty; no AUTH at all when both are).
func (s *Server) DoAs(user, password string, args ...string) (string, error) {
	return s.dial(5*time.Second, user, password, args)
}

func (s *Server) do(timeout time.Duration, args ...string) (string, error) {
	return s.dial(timeout, s.opts.User, s.opts.Password, args)
}

func (s *Server) dial(timeout time.Duration, user, password string, args []string) (string, error) {
	var c net.Conn
	var err error
	if s.tls != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", s.Addr(), s.tls)
	} else {
		c, err = net.DialTimeout("tcp", s.Addr(), timeout)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	if user != "" || password != "" {
		auth := []string{"AUTH", password}
		if user != "" {
			auth = []string{"AUTH", user, password}
		}
		if _, err := roundTrip(c, r, auth); err != nil {
			return "", fmt.Errorf("AUTH: %w", err)
		}
	}
	return roundTrip(c, r, args)
}

// ReplyError is an error reply of the server.
type ReplyError string

func (e ReplyError) Error() string { return "redis: " + string(e) }

func roundTrip(w io.Writer, r *bufio.Reader, args []string) (string, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return "", err
	}
	return readReply(r)
}

// readReply reads one RESP2 reply.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: an empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return "", ReplyError(body)
	case ':':
		return body, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("redistest: bulk length %q: %w", body, err)
		}
		if n < 0 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("redistest: array length %q: %w", body, err)
		}
		if n < 0 {
			return "(nil)", nil
		}
		elems := make([]string, 0, n)
		for range n {
			e, err := readReply(r)
			var re ReplyError
			if err != nil && !errors.As(err, &re) {
				return "", err
			}
			elems = append(elems, e)
		}
		return strings.Join(elems, " "), nil
	}
	return "", fmt.Errorf("redistest: unknown reply %q", line)
}
