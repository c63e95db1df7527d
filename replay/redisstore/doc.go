// Package redisstore is a replay.Store in Redis: the store of single-use token and
// DPoP proof jtis that several replicas of one API share. One replica can use
// replay.Memory; two or more need this, or a token used once at each replica passes
// twice. It is a package of its own so that a service that imports only middleware
// does not build a Redis client.
//
// # Use
//
//	store, err := redisstore.New(redisstore.Config{
//		Addrs:    []string{"redis.tokengate.svc:6379"},
//		Username: "tokengate", Password: password, // an ACL user
//		TLS:      &tls.Config{MinVersion: tls.VersionTLS12},
//	})
//	if err != nil { ... }        // every problem of the Config, each a *ConfigError
//	defer store.Close()
//	first, err := store.Use(ctx, issuer+"|"+jti, exp)
//	switch {
//	case err != nil:             // errors.Is(err, redisstore.ErrUnavailable): refuse, 503
//	case !first:                 // a replay: refuse, 401
//	}
//
// New does not contact Redis, so a process starts while Redis is down; Ping tells
// readiness whether Redis answers.
//
// # What a use does
//
// One command, in one round trip on an open connection:
//
//	SET <KeyPrefix><key> 1 NX PXAT <exp in Unix milliseconds, rounded up>
//
// Redis sets the key only if it is absent, atomically, so that of any number of
// concurrent uses from any number of replicas exactly one is first; and it forgets the
// key at exp, when the token or proof it guards is refused for its age anyway. As with
// replay.Memory, an exp already past is a first use that leaves no record (unless a
// live record of the key exists). Redis 6.2 or later is needed (PXAT). Redis's clock
// decides when a record expires: keep it in time with the replicas' (NTP), and pass an
// exp that includes the leeway the caller accepts tokens with.
//
// # Failing closed
//
// A use that Redis does not answer within Config.Timeout (50 ms by default, dialling
// included), that cannot reach Redis, or that Redis answers with an error (a wrong
// password, a missing permission, a read-only replica, out of memory) returns an error
// wrapping ErrUnavailable, and first is false: the caller refuses the request. Nothing
// is logged here; the error says what happened. A use that timed out may still have been
// recorded by Redis, so that retrying the same token is refused as a replay: the safe
// side. Once Redis is back, the same Store works again without a restart.
//
// # Topologies
//
// One address is one server, or a primary behind one name (a Kubernetes Service,
// a cloud endpoint). Several addresses are the nodes of a Redis Cluster (the client
// learns the slots from whichever answers, and follows MOVED). With MasterName, the
// addresses are Sentinels, which say where the master is and when it changed; the
// Sentinels get the same credentials and TLS settings as Redis.
//
// # The client library
//
// github.com/redis/rueidis, chosen over github.com/redis/go-redis/v9 (both maintained by
// Redis; docs/operations.md has the comparison): it never logs (go-redis writes to a
// process-wide logger on stderr, which would break the sidecar's JSON log lines); a
// command against a Redis that is down fails at once with the dial's error (go-redis
// retries the dial with backoff until the deadline, then reports only "context deadline
// exceeded", and its dial goroutines outlive the call and Close); concurrent uses are
// pipelined on one connection without a pool to wait for; and it adds no module
// besides golang.org/x/sys. What it costs: rueidis connects while making its client, so
// Store makes it on the first use (concurrent first uses share one attempt, each bounded
// by its own timeout), not in New.
package redisstore
