package middleware

import (
	"sync"
	"time"
)

// tokenCache remembers the claims of tokens verified before (DESIGN.md request path,
// step 2). It is keyed by the whole token string, never a part of it: the signature
// segment alone is malleable (STANDARDS X28), so two different strings must never share
// an entry. Bounded; an entry is dropped once its token expires. Sharded so that
// concurrent hits do not contend on one lock.
type tokenCache struct {
	shards   [cacheShards]cacheShard
	perShard int
	leeway   time.Duration
}

const cacheShards = 32

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*Claims
	_  [40]byte // keep shards on separate cache lines
}

func newTokenCache(entries int, leeway time.Duration) *tokenCache {
	c := &tokenCache{perShard: max(1, (entries+cacheShards-1)/cacheShards), leeway: leeway}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*Claims)
	}
	return c
}

// shard picks a shard from the last bytes of the token, its signature: random for
// tokens the issuer signed, which are the only ones ever stored.
func (c *tokenCache) shard(token string) *cacheShard {
	n := len(token)
	h := uint(token[n-1]) + 31*uint(token[n-2]) + 961*uint(token[n-3])
	return &c.shards[h%cacheShards]
}

// get returns the claims of a token verified before, if its time claims still hold at
// now (with the same leeway as a first verification): exp is checked on every hit, so
// an entry never outlives its token. An expired entry is dropped and reported so.
func (c *tokenCache) get(token string, now time.Time) (claims *Claims, expired bool) {
	if len(token) < 3 {
		return nil, false
	}
	s := c.shard(token)
	s.mu.RLock()
	cl := s.m[token]
	s.mu.RUnlock()
	if cl == nil {
		return nil, false
	}
	if !now.Before(cl.ExpiresAt.Add(c.leeway)) {
		s.mu.Lock()
		delete(s.m, token)
		s.mu.Unlock()
		return nil, true
	}
	if !cl.NotBefore.IsZero() && now.Before(cl.NotBefore.Add(-c.leeway)) {
		return nil, false // a clock that went back; verify afresh
	}
	return cl, false
}

// put stores the claims of a token that was just verified. A full shard first drops
// its expired entries, then, if still full, an arbitrary one (Go randomises map
// iteration).
func (c *tokenCache) put(token string, claims *Claims, now time.Time) {
	if len(token) < 3 {
		return
	}
	s := c.shard(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		for k, v := range s.m {
			if !now.Before(v.ExpiresAt.Add(c.leeway)) {
				delete(s.m, k)
			}
		}
		for k := range s.m {
			if len(s.m) < c.perShard {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[token] = claims
}

// len counts the entries, for tests.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}
