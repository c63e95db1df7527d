package middleware

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/internal/clip"
)

// tokenCache remembers the claims of tokens verified before (docs/middleware.md,
// Cache). It is keyed by the whole token string, never a part of it: the signature
// segment alone is malleable (docs/standards.md X28), so two different strings must
// never share an entry. An entry is dropped once its token expires.
//
// It is bounded by bytes as well as by entries: a client controls the size of what it
// sends, and ten thousand 8 KiB tokens are not ten thousand 1 KiB ones. Each entry is
// charged for its key, the claims it keeps (Claims.size) and a fixed overhead; the
// claims are a compact copy (compact) that holds what a hit needs and the claims
// Tokens.KeepClaims names, never the request's header or the decoded payload.
//
// A hit reads a sync.Map, which does not write to shared memory: concurrent requests
// with the same token do not contend, as they would on a mutex's reader count.
//
// A token verified by a key that its issuer later removes (revokes) must not stay
// allowed until it expires: each entry records the key source's removal count when it
// was verified, and a hit whose count is out of date is verified again.
type tokenCache struct {
	m        sync.Map // token string → *cacheEntry
	size     atomic.Int64
	bytes    atomic.Int64
	max      int64
	maxBytes int64
	leeway   time.Duration
	keep     []string   // claims kept in Raw; nil for all
	evict    sync.Mutex // one eviction at a time
}

type cacheEntry struct {
	claims   *Claims
	removals uint64
	cost     int64
}

// entryOverhead is what an entry costs beyond its key and its claims' contents: the
// sync.Map node, the entry, the Claims struct with its slices, map and time values.
// TestCacheChargesWhatItHolds measures it.
const entryOverhead = 768

func newTokenCache(entries int, maxBytes int64, leeway time.Duration, keep []string) *tokenCache {
	return &tokenCache{max: int64(max(1, entries)), maxBytes: max(1, maxBytes), leeway: leeway, keep: keep}
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
		c.drop(token, e)
		return nil, false
	}
	if !now.Before(cl.ExpiresAt.Add(c.leeway)) {
		c.drop(token, e)
		return nil, true
	}
	if !cl.NotBefore.IsZero() && now.Before(cl.NotBefore.Add(-c.leeway)) {
		return nil, false // a clock that went back: verify afresh
	}
	return cl, false
}

func (c *tokenCache) drop(k any, e *cacheEntry) {
	if c.m.CompareAndDelete(k, e) {
		c.size.Add(-1)
		c.bytes.Add(-e.cost)
	}
}

// put stores a compact copy of the claims of a token that was just verified, with the
// key source's removal count read before the verification began, and returns that
// copy. A token whose entry alone would take more than a tenth of the budget is not
// stored. When the cache is over either bound it first drops expired entries, then
// arbitrary ones, down to nine tenths of the bound, so that evictions are rare.
func (c *tokenCache) put(token string, claims *Claims, removals uint64, now time.Time) *Claims {
	claims = claims.compact(c.keep)
	cost := int64(len(token)) + claims.size() + entryOverhead
	if cost > c.maxBytes/10 {
		return claims
	}
	// A clone: the token may be a slice of a request header (a Cookie header can be
	// 64 KiB), which the cache must not keep alive.
	e := &cacheEntry{claims: claims, removals: removals, cost: cost}
	if v, loaded := c.m.LoadOrStore(strings.Clone(token), e); loaded {
		return v.(*cacheEntry).claims
	}
	n, b := c.size.Add(1), c.bytes.Add(cost)
	if n <= c.max && b <= c.maxBytes {
		return claims
	}
	if !c.evict.TryLock() {
		return claims // another request is evicting; a bound is exceeded briefly at most
	}
	defer c.evict.Unlock()
	over := func() bool { return c.size.Load() > c.max-c.max/10 || c.bytes.Load() > c.maxBytes-c.maxBytes/10 }
	c.m.Range(func(k, v any) bool {
		if e := v.(*cacheEntry); !now.Before(e.claims.ExpiresAt.Add(c.leeway)) {
			c.drop(k, e)
		}
		return true
	})
	c.m.Range(func(k, v any) bool {
		if !over() {
			return false
		}
		c.drop(k, v.(*cacheEntry))
		return true
	})
	return claims
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
// the whole token, and entries live rejectTTL at most: a key replaced under the same kid
// is seen within that time. Like the token cache it is bounded by entries and by bytes:
// an entry keeps the denial's reason, issuer, kid (at most 256 bytes, jwks checks) and
// error text, never the error chain, which can hold what a library decoded.
type rejectCache struct {
	m        sync.Map // [32]byte → *rejection
	size     atomic.Int64
	bytes    atomic.Int64
	max      int64
	maxBytes int64
	evict    sync.Mutex
}

const rejectTTL = time.Minute

// rejectOverhead is an entry's cost beyond its strings: the map node, the key, the
// rejection and the Error.
const rejectOverhead = 256

type rejection struct {
	err      *Error
	until    time.Time
	cost     int64
	removals uint64 // the key source's removal count when the token was refused
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

func newRejectCache(entries int, maxBytes int64) *rejectCache {
	return &rejectCache{max: int64(max(1, entries)), maxBytes: max(1, maxBytes)}
}

// get returns a refusal remembered for the token hashed to key, unless it is out of
// date: older than rejectTTL, or older than the last change of a key (removals), after
// which a token refused for its signature may verify (a key replaced under its kid).
func (c *rejectCache) get(key [32]byte, now time.Time, removals uint64) *Error {
	v, ok := c.m.Load(key)
	if !ok {
		return nil
	}
	r := v.(*rejection)
	if now.After(r.until) || r.removals != removals {
		c.drop(key, r)
		return nil
	}
	return r.err
}

func (c *rejectCache) drop(k any, r *rejection) {
	if c.m.CompareAndDelete(k, r) {
		c.size.Add(-1)
		c.bytes.Add(-r.cost)
	}
}

func (c *rejectCache) put(key [32]byte, e *Error, now time.Time, removals uint64) {
	kept := &Error{Reason: e.Reason, Issuer: e.Issuer, KeyID: clip.String(e.KeyID, 256)}
	if e.Err != nil {
		kept.Err = errors.New(clip.String(e.Err.Error(), 512))
	}
	cost := int64(rejectOverhead + len(kept.Issuer) + len(kept.KeyID))
	if kept.Err != nil {
		cost += int64(len(kept.Err.Error()))
	}
	r := &rejection{err: kept, until: now.Add(rejectTTL), cost: cost, removals: removals}
	if _, loaded := c.m.LoadOrStore(key, r); loaded {
		return
	}
	n, b := c.size.Add(1), c.bytes.Add(cost)
	if n <= c.max && b <= c.maxBytes || !c.evict.TryLock() {
		return
	}
	defer c.evict.Unlock()
	c.m.Range(func(k, v any) bool {
		if c.size.Load() <= c.max-c.max/10 && c.bytes.Load() <= c.maxBytes-c.maxBytes/10 {
			return false
		}
		c.drop(k, v.(*rejection))
		return true
	})
}
