package middleware

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/internal/clip"
)

// boundedMap is the store of both caches: a concurrent map bounded by its entries and
// by the bytes they are charged, whose entries expire at a time and go stale when the
// key source's removal count moves on.
//
// A hit reads a sync.Map, which does not write to shared memory: concurrent requests
// with the same token do not contend, as they would on a mutex's reader count.
//
// When a put takes it over either bound it drops the expired entries first, then
// arbitrary ones, down to nine tenths of each bound, so that evictions are rare. An
// entry that alone would cost more than a tenth of the bytes is not stored: one client
// must not be able to empty the cache with a few huge tokens.
type boundedMap[K comparable, V any] struct {
	m        sync.Map // K → *slot[V]
	size     atomic.Int64
	bytes    atomic.Int64
	max      int64
	maxBytes int64
	evict    sync.Mutex // one eviction at a time
}

type slot[V any] struct {
	val      V
	until    time.Time // expired from this instant on
	removals uint64    // the key source's removal count when the entry was made
	cost     int64
}

func newBoundedMap[K comparable, V any](entries int, maxBytes int64) *boundedMap[K, V] {
	return &boundedMap[K, V]{max: int64(max(1, entries)), maxBytes: max(1, maxBytes)}
}

// get returns the value under k when there is a current entry (found). An entry made
// before the last key removal is dropped, as one that expired at now is, and that one
// is reported (expired) with its value, which says why it expired.
func (b *boundedMap[K, V]) get(k K, now time.Time, removals uint64) (v V, found, expired bool) {
	x, ok := b.m.Load(k)
	if !ok {
		return v, false, false
	}
	s := x.(*slot[V])
	switch {
	case s.removals != removals:
		b.drop(k, s)
		return v, false, false
	case !now.Before(s.until):
		b.drop(k, s)
		return s.val, false, true
	}
	return s.val, true, false
}

func (b *boundedMap[K, V]) drop(k any, s *slot[V]) {
	if b.m.CompareAndDelete(k, s) {
		b.size.Add(-1)
		b.bytes.Add(-s.cost)
	}
}

// put stores v under k, charged cost bytes, until the given time, unless an entry for
// k is there already: then it returns that entry's value, else v.
func (b *boundedMap[K, V]) put(k K, v V, cost int64, until time.Time, removals uint64, now time.Time) V {
	if cost > b.maxBytes/10 {
		return v
	}
	s := &slot[V]{val: v, until: until, removals: removals, cost: cost}
	if x, loaded := b.m.LoadOrStore(k, s); loaded {
		return x.(*slot[V]).val
	}
	n, by := b.size.Add(1), b.bytes.Add(cost)
	if n <= b.max && by <= b.maxBytes || !b.evict.TryLock() {
		return v // within bounds, or another request is evicting: exceeded briefly at most
	}
	defer b.evict.Unlock()
	b.m.Range(func(k, x any) bool {
		if s := x.(*slot[V]); !now.Before(s.until) {
			b.drop(k, s)
		}
		return true
	})
	b.m.Range(func(k, x any) bool {
		if b.size.Load() <= b.max-b.max/10 && b.bytes.Load() <= b.maxBytes-b.maxBytes/10 {
			return false
		}
		b.drop(k, x.(*slot[V]))
		return true
	})
	return v
}

// len counts the entries, for tests.
func (b *boundedMap[K, V]) len() int {
	n := 0
	b.m.Range(func(any, any) bool { n++; return true })
	return n
}

// tokenCache remembers the claims of tokens verified before (docs/middleware.md,
// Cache). It is keyed by the whole token string, never a part of it: the signature
// segment alone is malleable (docs/standards.md X28), so two different strings must
// never share an entry. An entry expires with its token (exp and the leeway).
//
// It is bounded by bytes as well as by entries: a client controls the size of what it
// sends, and ten thousand 8 KiB tokens are not ten thousand 1 KiB ones. Each entry is
// charged for its key, the claims it keeps (Claims.size) and a fixed overhead; the
// claims are a compact copy (compact) that holds what a hit needs and the claims
// Tokens.KeepClaims names, never the request's header or the decoded payload.
//
// A token verified by a key that its issuer later removes (revokes) must not stay
// allowed until it expires: each entry records the key source's removal count when it
// was verified, and a hit whose count is out of date is verified again.
type tokenCache struct {
	entries *boundedMap[string, *Claims]
	leeway  time.Duration
	keep    []string // claims kept in Raw; nil for all
}

// entryOverhead is what an entry costs beyond its key and its claims' contents: the
// sync.Map node, the slot, the Claims struct with its slices, map and time values.
// TestCacheChargesWhatItHolds measures it.
const entryOverhead = 768

func newTokenCache(entries int, maxBytes int64, leeway time.Duration, keep []string) *tokenCache {
	return &tokenCache{entries: newBoundedMap[string, *Claims](entries, maxBytes), leeway: leeway, keep: keep}
}

// get returns the claims of a token verified before, if its time claims still hold at
// now (with the same leeway as a first verification) and no key was removed since
// (removals): exp is checked on every hit, so an entry never outlives its token. An
// expired entry is dropped and reported so.
func (c *tokenCache) get(token string, now time.Time, removals uint64) (claims *Claims, expired bool) {
	cl, found, expired := c.entries.get(token, now, removals)
	if !found {
		if expired && now.Before(cl.ExpiresAt.Add(c.leeway)) {
			// The entry ended before its token: an introspected token's cacheTTL.
			return nil, false
		}
		return nil, expired
	}
	if !cl.NotBefore.IsZero() && now.Before(cl.NotBefore.Add(-c.leeway)) {
		return nil, false // a clock that went back: verify afresh
	}
	return cl, false
}

// put stores a compact copy of the claims of a token that was just verified, with the
// key source's removal count read before the verification began, and returns that
// copy (or the claims cached for the token already).
func (c *tokenCache) put(token string, claims *Claims, removals uint64, now time.Time) *Claims {
	return c.putUntil(token, claims, removals, now, time.Time{})
}

// putUntil is put with an entry that ends at until when that comes before the token's
// exp (an introspected token is asked about again after its cacheTTL).
func (c *tokenCache) putUntil(token string, claims *Claims, removals uint64, now, until time.Time) *Claims {
	claims = claims.compact(c.keep)
	cost := int64(len(token)) + claims.size() + entryOverhead
	end := claims.ExpiresAt.Add(c.leeway)
	if !until.IsZero() && (claims.ExpiresAt.IsZero() || until.Before(end)) {
		end = until
	}
	// A clone: the token may be a slice of a request header (a Cookie header can be
	// 64 KiB), which the cache must not keep alive.
	return c.entries.put(strings.Clone(token), claims, cost, end, removals, now)
}

// rejectCache remembers tokens that failed verification for a reason that the same
// token will fail for again (malformed, a bad signature, expired, another audience...),
// so that a client retrying with an expired token, or a flood of one forged token, costs
// a hash and a map look-up instead of a signature check. It is keyed by the SHA-256 of
// the whole token, and entries live rejectTTL at most: a key replaced under the same kid
// is seen within that time, and at once when the key source counts it as a removal.
// Like the token cache it is bounded by entries and by bytes: an entry keeps the
// denial's reason, issuer, kid (at most 256 bytes, jwks checks) and error text, never
// the error chain, which can hold what a library decoded.
type rejectCache struct {
	entries *boundedMap[[32]byte, *Error]
}

const rejectTTL = time.Minute

// rejectOverhead is an entry's cost beyond its strings: the map node, the key, the
// slot and the Error.
const rejectOverhead = 256

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
	return &rejectCache{entries: newBoundedMap[[32]byte, *Error](entries, maxBytes)}
}

// get returns a refusal remembered for the token hashed to key, unless it is out of
// date: older than rejectTTL, or older than the last change of a key (removals), after
// which a token refused for its signature may verify (a key replaced under its kid).
func (c *rejectCache) get(key [32]byte, now time.Time, removals uint64) *Error {
	if e, found, _ := c.entries.get(key, now, removals); found {
		return e
	}
	return nil
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
	c.entries.put(key, kept, cost, now.Add(rejectTTL), removals, now)
}
