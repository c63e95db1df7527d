package introspect

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// entry is a cached answer: an active result, or nil for an inactive token.
type entry struct {
	res   *Result
	until time.Time // expired from this instant on
}

func (e *entry) answer() (*Result, error) {
	if e.res == nil {
		return nil, errInactiveCached
	}
	return e.res, nil
}

// cache holds answers under the SHA-256 of their token, as middleware's boundedMap
// does its entries: a hit reads a sync.Map, which does not write to shared memory, so
// concurrent requests with one token do not contend. When a put takes it over its
// bound, it drops the expired entries, then those that expire first, down to nine
// tenths of the bound, so that evictions are rare.
type cache struct {
	m     sync.Map // [32]byte → *entry
	size  atomic.Int64
	max   int64
	evict sync.Mutex // one eviction at a time
}

func newCache(entries int) *cache { return &cache{max: int64(max(1, entries))} }

// get returns the entry under k if it is current at now; an expired one is dropped.
func (c *cache) get(k [32]byte, now time.Time) (*entry, bool) {
	x, ok := c.m.Load(k)
	if !ok {
		return nil, false
	}
	e := x.(*entry)
	if !now.Before(e.until) {
		c.drop(k, e)
		return nil, false
	}
	return e, true
}

func (c *cache) drop(k any, e *entry) {
	if c.m.CompareAndDelete(k, e) {
		c.size.Add(-1)
	}
}

// put stores e under k, in place of any entry there.
func (c *cache) put(k [32]byte, e *entry, now time.Time) {
	if _, loaded := c.m.Swap(k, e); loaded {
		return
	}
	if c.size.Add(1) <= c.max || !c.evict.TryLock() {
		return // within bounds, or another put is evicting: exceeded briefly at most
	}
	defer c.evict.Unlock()
	type kept struct {
		k any
		e *entry
	}
	var live []kept
	c.m.Range(func(k, x any) bool {
		if e := x.(*entry); !now.Before(e.until) {
			c.drop(k, e)
		} else {
			live = append(live, kept{k, e})
		}
		return true
	})
	excess := int(c.size.Load() - (c.max - c.max/10))
	if excess <= 0 {
		return
	}
	slices.SortFunc(live, func(a, b kept) int { return a.e.until.Compare(b.e.until) })
	for _, x := range live[:min(excess, len(live))] {
		c.drop(x.k, x.e)
	}
}

// len counts the entries, for tests.
func (c *cache) len() int {
	n := 0
	c.m.Range(func(any, any) bool { n++; return true })
	return n
}
