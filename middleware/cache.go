package middleware

import (
	"sync"
	"sync/atomic"
	"time"
)

// tokenCache remembers the claims of tokens verified before (DESIGN.md request path,
// step 2). It is keyed by the whole token string, never a part of it: the signature
// segment alone is malleable (STANDARDS X28), so two different strings must never share
// an entry. It is bounded, and an entry is dropped once its token expires.
//
// A hit reads a sync.Map, which does not write to shared memory: concurrent requests
// with the same token do not contend, as they would on a mutex's reader count.
//
// A token verified by a key that its issuer later removes (revokes) must not stay
// allowed until it expires: each entry records the key source's removal count when it
// was verified, and a hit whose count is out of date is verified again.
type tokenCache struct {
	m      sync.Map // token string → *cacheEntry
	size   atomic.Int64
	max    int64
	leeway time.Duration
	evict  sync.Mutex // one eviction at a time
}

type cacheEntry struct {
	claims   *Claims
	removals uint64
}

func newTokenCache(entries int, leeway time.Duration) *tokenCache {
	return &tokenCache{max: int64(max(1, entries)), leeway: leeway}
}

// get returns the claims of a token verified before, if its time claims still hold at
// now (with the same leeway as a first verification) and no key was removed since
// (removals): exp is checked on every hit, so an entry never outlives its token. An
// expired entry is dropped and reported so.
func (c *tokenCache) get(token string, now time.Time, removals uint64) (claims *Claims, expired bool) {
	v, ok := c.m.Load(token)
	if !ok {
		return nil, false
	}
	e := v.(*cacheEntry)
	cl := e.claims
	if e.removals != removals {
		if c.m.CompareAndDelete(token, e) {
			c.size.Add(-1)
		}
		return nil, false
	}
	if !now.Before(cl.ExpiresAt.Add(c.leeway)) {
		if c.m.CompareAndDelete(token, e) {
			c.size.Add(-1)
		}
		return nil, true
	}
	if !cl.NotBefore.IsZero() && now.Before(cl.NotBefore.Add(-c.leeway)) {
		return nil, false // a clock that went back: verify afresh
	}
	return cl, false
}

// put stores the claims of a token that was just verified, with the key source's
// removal count read before the verification began. When the cache is full it first
// drops expired entries, then arbitrary ones, down to nine tenths of the bound, so that
// evictions are rare.
func (c *tokenCache) put(token string, claims *Claims, removals uint64, now time.Time) {
	if _, loaded := c.m.LoadOrStore(token, &cacheEntry{claims: claims, removals: removals}); loaded {
		return
	}
	if c.size.Add(1) <= c.max {
		return
	}
	if !c.evict.TryLock() {
		return // another request is evicting; the bound is exceeded briefly at most
	}
	defer c.evict.Unlock()
	target := c.max - c.max/10
	c.m.Range(func(k, v any) bool {
		if !now.Before(v.(*cacheEntry).claims.ExpiresAt.Add(c.leeway)) && c.m.CompareAndDelete(k, v) {
			c.size.Add(-1)
		}
		return true
	})
	c.m.Range(func(k, v any) bool {
		if c.size.Load() <= target {
			return false
		}
		if c.m.CompareAndDelete(k, v) {
			c.size.Add(-1)
		}
		return true
	})
}

// len counts the entries, for tests.
func (c *tokenCache) len() int {
	n := 0
	c.m.Range(func(any, any) bool { n++; return true })
	return n
}

// rejectCache remembers tokens that failed verification for a reason that the same
// token will fail for again (malformed, a bad signature, expired, another audience...),
// so that a client retrying with an expired token, or a flood of one forged token, costs
// a hash and a map look-up instead of a signature check. It is keyed by the SHA-256 of
// the whole token, which bounds its memory whatever a client sends, and entries live
// rejectTTL at most: a key replaced under the same kid is seen within that time.
type rejectCache struct {
	m     sync.Map // [32]byte → *rejection
	size  atomic.Int64
	max   int64
	evict sync.Mutex
}

const rejectTTL = time.Minute

type rejection struct {
	err   *Error
	until time.Time
}

// cacheable reports whether a denial will be the same for the same token for a while.
// Not cacheable: an unknown kid (the key may be published in a moment), keys not loaded,
// a token not valid yet.
func cacheable(r Reason) bool {
	switch r {
	case ReasonMalformedToken, ReasonAlgorithm, ReasonIssuer, ReasonSignature, ReasonExpired, ReasonAudience, ReasonClaims:
		return true
	}
	return false
}

func newRejectCache(entries int) *rejectCache {
	return &rejectCache{max: int64(max(1, entries))}
}

func (c *rejectCache) get(key [32]byte, now time.Time) *Error {
	v, ok := c.m.Load(key)
	if !ok {
		return nil
	}
	r := v.(*rejection)
	if now.After(r.until) {
		if c.m.CompareAndDelete(key, r) {
			c.size.Add(-1)
		}
		return nil
	}
	return r.err
}

func (c *rejectCache) put(key [32]byte, e *Error, now time.Time) {
	if _, loaded := c.m.LoadOrStore(key, &rejection{err: e, until: now.Add(rejectTTL)}); loaded {
		return
	}
	if c.size.Add(1) <= c.max || !c.evict.TryLock() {
		return
	}
	defer c.evict.Unlock()
	target := c.max - c.max/10
	c.m.Range(func(k, v any) bool {
		if c.size.Load() <= target {
			return false
		}
		if c.m.CompareAndDelete(k, v) {
			c.size.Add(-1)
		}
		return true
	})
}
