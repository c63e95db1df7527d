package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/tokengate/tokengate/replay"
)

// DefaultTimeout bounds a Use or a Ping made with a zero Config.Timeout: dialling,
// authenticating and the command's round trip together.
const DefaultTimeout = 50 * time.Millisecond

// DefaultKeyPrefix is prepended to every key when Config.KeyPrefix is empty.
const DefaultKeyPrefix = "tokengate:replay:"

// MaxKeyLength bounds the key a caller passes to Use, in bytes (the prefix aside). The
// caller's keys (an issuer and a jti, or a proof's jti) are far shorter; a longer one
// is a bug, and is refused rather than stored.
const MaxKeyLength = 1024

// maxPrefixLength bounds Config.KeyPrefix.
const maxPrefixLength = 256

var (
	// ErrUnavailable is what every failed Use and Ping matches with errors.Is: Redis
	// did not answer within the timeout, could not be reached, refused the command (a
	// wrong password, a read-only replica, no memory) or answered something else than
	// SET answers. The caller refuses the request.
	ErrUnavailable = errors.New("redisstore: the replay store is unavailable")

	// ErrKeyTooLong is Use's answer for a key longer than MaxKeyLength: a caller's bug,
	// refused without asking Redis.
	ErrKeyTooLong = errors.New("redisstore: the key is longer than redisstore.MaxKeyLength")

	errClosed = errors.New("the store is closed")
)

// Config says where Redis is and how to reach it. The zero value of a field means its
// default; Addrs is required. The sidecar builds it from its configuration file's
// replay.redis section.
type Config struct {
	// Addrs are Redis's host:port addresses (required). One address is a single server,
	// standalone or a replicated primary behind one name (a Kubernetes Service, a cloud
	// endpoint); several are the nodes of a Redis Cluster, of which one that answers is
	// enough to learn the others. With MasterName, they are Sentinels instead.
	Addrs []string

	// MasterName turns Sentinel on: Addrs are the Sentinels, which tell where the
	// master named MasterName is and when it changed. Empty: no Sentinel.
	MasterName string

	// Username and Password authenticate to Redis (and to the Sentinels, which usually
	// share the password): an ACL user (Redis 6 or later), or only Password for the
	// default user (requirepass). Empty: no authentication. The user needs only the SET
	// and PING commands on the keys under KeyPrefix: +set +ping ~<KeyPrefix>*, plus
	// +hello +client +auth for the connection's handshake.
	Username, Password string

	// TLS, when not nil, is the TLS configuration of every connection (ServerName is
	// taken from the address when empty). Nil: plain TCP.
	TLS *tls.Config

	// Timeout bounds each Use and each Ping: dialling a connection when there is none,
	// authenticating, and the command's round trip. A use not answered in time is an
	// error. This defaults to DefaultTimeout.
	Timeout time.Duration

	// KeyPrefix is prepended to every key, so that tokengate's records are told from
	// other data and an ACL can confine the user to them. At most 256 bytes. This
	// defaults to DefaultKeyPrefix.
	KeyPrefix string
}

// ConfigError is one problem of a Config; New returns every problem at once, joined.
type ConfigError struct {
	Field   string // the Config field, such as "Addrs[1]" or "Timeout"
	Problem string // what is wrong, and what would be right
}

func (e *ConfigError) Error() string {
	return "redisstore: " + e.Field + ": " + e.Problem
}

// Store is a replay.Store in Redis, shared by every replica that uses the same Redis
// and KeyPrefix. It is safe for concurrent use; its methods may be called from any
// goroutine.
//
// It connects on its first Use or Ping, not in New, so that a process starts while
// Redis is down and its readiness says so. The client library's goroutines (a reader
// and a writer per connection, a timer per idle connection, and with Sentinel one that
// watches for a new master) live until Close, but one: with a Cluster, a connection to
// a node that left the topology (or to an address in Config.Addrs that the nodes do not
// announce, such as a Service name) is closed 5 s after rueidis learnt it, by a
// goroutine of rueidis that Close does not stop and that ends by itself.
type Store struct {
	opt     rueidis.ClientOption
	timeout time.Duration
	prefix  string

	mu      sync.Mutex
	client  rueidis.Client // nil until a connection attempt succeeded
	dialing *attempt       // the attempt in flight, if any
	closed  bool
	wg      sync.WaitGroup // attempts in flight
}

var _ replay.Store = (*Store)(nil)

// attempt is one construction of the client, which every Use waiting for it shares.
type attempt struct {
	done   chan struct{}
	client rueidis.Client
	err    error
}

// New checks cfg and returns a Store. It does not contact Redis: a Redis that is down
// shows in Use and Ping, not here. A bad Config is an error that joins a *ConfigError
// per problem.
func New(cfg Config) (*Store, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if len(cfg.Addrs) == 0 {
		bad("Addrs", "empty: give Redis's host:port, several for a Redis Cluster, or the Sentinels' with MasterName")
	}
	seen := map[string]bool{}
	for i, a := range cfg.Addrs {
		field := "Addrs[" + strconv.Itoa(i) + "]"
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			bad(field, "%q is not host:port: %v", a, err)
			continue
		}
		if host == "" {
			bad(field, "%q has no host", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			bad(field, "%q: the port must be a number from 1 to 65535", a)
		}
		if seen[a] {
			bad(field, "%q is listed twice", a)
		}
		seen[a] = true
	}
	if strings.TrimSpace(cfg.MasterName) != cfg.MasterName {
		bad("MasterName", "%q has spaces around it", cfg.MasterName)
	}
	// Read from a file, a credential keeps the file's last newline unless it is
	// trimmed; Redis would then refuse it with a message that does not say why.
	if strings.ContainsAny(cfg.Username, "\r\n") {
		bad("Username", "contains a line break (a file's trailing newline?)")
	}
	if strings.ContainsAny(cfg.Password, "\r\n") {
		bad("Password", "contains a line break (a file's trailing newline?)")
	}
	if cfg.Timeout < 0 {
		bad("Timeout", "%s is negative: use a positive duration, or zero for %s", cfg.Timeout, DefaultTimeout)
	}
	if len(cfg.KeyPrefix) > maxPrefixLength {
		bad("KeyPrefix", "%d bytes long: at most %d", len(cfg.KeyPrefix), maxPrefixLength)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	dialer := net.Dialer{Timeout: timeout, KeepAlive: time.Second}
	opt := rueidis.ClientOption{
		InitAddress: append([]string(nil), cfg.Addrs...),
		Username:    cfg.Username,
		Password:    cfg.Password,
		TLSConfig:   cfg.TLS.Clone(),
		ClientName:  "tokengate-replay",
		Dialer:      dialer,
		// A connection that answers nothing for this long, not even the PING rueidis
		// sends on an idle one, is closed and dialled again: after a network partition,
		// uses recover within about a second instead of the library's ten.
		ConnWriteTimeout: max(time.Second, 10*timeout),
		// One connection per Redis node, on which concurrent uses are pipelined: it is
		// dialled once, so that a use is one round trip on it (rueidis would otherwise
		// spread commands over up to four, each dialled by the use that first needs it).
		PipelineMultiplex: -1,
		// Uses are never cached: every one is a SET that Redis decides.
		DisableCache: true,
		// SET is never retried by rueidis; PING (a read) would be, past the timeout.
		DisableRetry: true,
		// Commands are a few hundred bytes and replies a few: small buffers keep the
		// sidecar's memory small (the default is 0.5 MiB each, per connection).
		ReadBufferEachConn:  16 << 10,
		WriteBufferEachConn: 16 << 10,
	}
	switch {
	case cfg.MasterName != "":
		opt.Sentinel = rueidis.SentinelOption{
			MasterSet: cfg.MasterName,
			Dialer:    dialer,
			TLSConfig: cfg.TLS.Clone(),
			Username:  cfg.Username,
			Password:  cfg.Password,
			// Reconcile with the Sentinels now and then, in case a +switch-master
			// event was missed; without it the client could keep a demoted master.
			TopologyRefreshInterval: 5 * time.Second,
			ClientName:              "tokengate-replay",
		}
	case len(cfg.Addrs) == 1:
		// One address is one server, even if it happens to be a cluster node: no
		// CLUSTER SLOTS probe on connecting.
		opt.ForceSingleClient = true
	}
	return &Store{opt: opt, timeout: timeout, prefix: prefix}, nil
}

// Name is the store's label in tokengate's metrics: "redis".
func (s *Store) Name() string { return "redis" }

// Use records key until exp and reports whether this is its first use within that
// time, with one atomic command, SET <prefix><key> 1 NX PXAT <exp in Unix ms, rounded
// up>, in one round trip: first is true when Redis set the key, false when the key was
// there. It waits at most the Config's Timeout (and no longer than ctx allows).
//
// As in replay.Memory, a key whose exp has passed is not remembered: it counts as a
// first use unless a live record of it exists (Redis sets and at once expires it). The
// caller refuses expired tokens and proofs on its own.
//
// Every error wraps ErrUnavailable (and the cause: context.DeadlineExceeded for a
// timeout, the network error), except ErrKeyTooLong; first is then false. A use that
// timed out may still have been recorded by Redis, so that a retry of the same token
// is refused as a replay: the safe side. Redis's clock decides when a record expires.
func (s *Store) Use(ctx context.Context, key string, exp time.Time) (bool, error) {
	if len(key) > MaxKeyLength {
		return false, fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(key))
	}
	if err := ctx.Err(); err != nil {
		return false, unavailable("SET", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	c, err := s.get(ctx)
	if err != nil {
		return false, unavailable("SET", err)
	}
	cmd := c.B().Set().Key(s.prefix + key).Value("1").Nx().PxatMillisecondsTimestamp(unixMilliCeil(exp)).Build()
	reply, err := c.Do(ctx, cmd).ToString()
	switch {
	case err == nil && reply == "OK":
		return true, nil
	case rueidis.IsRedisNil(err):
		return false, nil
	case err == nil:
		return false, fmt.Errorf("%w: SET answered %q, not OK or nil", ErrUnavailable, reply)
	}
	return false, unavailable("SET", err)
}

// Ping asks Redis for PONG, connecting first if no connection is open, within the
// Config's Timeout: for a readiness check. An error wraps ErrUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	c, err := s.get(ctx)
	if err != nil {
		return unavailable("PING", err)
	}
	reply, err := c.Do(ctx, c.B().Ping().Build()).ToString()
	if err != nil {
		return unavailable("PING", err)
	}
	if reply != "PONG" {
		return fmt.Errorf("%w: PING answered %q, not PONG", ErrUnavailable, reply)
	}
	return nil
}

// Close closes the connections and waits for a connection attempt in flight, which
// ends within the Timeout (a Cluster's first topology query within a second, or ten
// times the Timeout). Uses after Close fail. It is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c := s.client
	s.client = nil
	s.mu.Unlock()
	s.wg.Wait() // an attempt that ends now closes what it made
	if c != nil {
		c.Close()
	}
	return nil
}

// get returns the client, making it when there is none. Concurrent callers share one
// attempt, and each gives up when its ctx ends. rueidis makes its first connection
// while making the client (to learn whether it talks to a cluster, or from the
// Sentinels where the master is), which is why the client is made here and not in New.
// Once made, the client reconnects by itself.
func (s *Store) get(ctx context.Context) (rueidis.Client, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errClosed
	}
	if c := s.client; c != nil {
		s.mu.Unlock()
		return c, nil
	}
	a := s.dialing
	if a == nil {
		a = &attempt{done: make(chan struct{})}
		s.dialing = a
		s.wg.Add(1)
		go s.connect(a)
	}
	s.mu.Unlock()
	select {
	case <-a.done:
		return a.client, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// connect makes the client for the attempt a. The dial and the handshake are bounded
// by the Timeout (the Dialer's), a cluster's first CLUSTER SLOTS by ConnWriteTimeout.
// A single server's client comes back even when its first dial failed (both c and
// err): the failure is this attempt's answer, and the client, which dials again on its
// next command, is kept for the next uses.
func (s *Store) connect(a *attempt) {
	defer s.wg.Done()
	c, err := rueidis.NewClient(s.opt)
	s.mu.Lock()
	s.dialing = nil
	closed := s.closed
	if c != nil && !closed {
		s.client = c
	}
	s.mu.Unlock()
	switch {
	case c != nil && closed:
		c.Close()
		a.err = errClosed
	case err != nil:
		a.err = err
	default:
		a.client = c
	}
	close(a.done)
}

// unavailable wraps err, the failure of command, in ErrUnavailable. A Redis error reply
// is copied as text: its bytes belong to the client library.
func unavailable(command string, err error) error {
	if re, ok := rueidis.IsRedisErr(err); ok {
		return fmt.Errorf("%w: %s: Redis answered %s", ErrUnavailable, command, strings.Clone(re.Error()))
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, command, err)
}

// unixMilliCeil is t in Unix milliseconds, rounded up so that a record never expires
// before t; at least 1, since Redis refuses PXAT 0 and below.
func unixMilliCeil(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.After(time.UnixMilli(ms)) {
		ms++
	}
	return max(ms, 1)
}
