package replay

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Store records single uses.
type Store interface {
	// Use records key until exp and reports whether this is its first use within that
	// time. An error means the store could not answer; the caller must refuse.
	Use(ctx context.Context, key string, exp time.Time) (first bool, err error)
}

// ErrFull is Memory's answer when it holds its maximum of live records: refusing a
// use is safe, forgetting a record to make room is not (it would allow a replay).
var ErrFull = errors.New("replay: the in-memory store is full of unexpired records")

// DefaultMaxEntries bounds a Memory store made with a zero maximum.
const DefaultMaxEntries = 1 << 20

// Memory is a Store in this process's memory, bounded in entries. Expired records are
// dropped when room is needed. It starts no goroutine.
type Memory struct {
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[string]time.Time
}

// NewMemory returns a Memory store of at most maxEntries live records
// (DefaultMaxEntries when zero or negative). now is its clock; nil is time.Now.
func NewMemory(maxEntries int, now func() time.Time) *Memory {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	if now == nil {
		now = time.Now
	}
	return &Memory{max: maxEntries, now: now, m: make(map[string]time.Time)}
}

// Use implements Store. A record whose exp has passed counts as absent.
func (s *Memory) Use(ctx context.Context, key string, exp time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if until, ok := s.m[key]; ok && now.Before(until) {
		return false, nil
	}
	if !now.Before(exp) {
		// Already expired: nothing to remember, and whatever it guards is refused for
		// its age elsewhere.
		delete(s.m, key)
		return true, nil
	}
	if len(s.m) >= s.max {
		s.sweep(now)
		if len(s.m) >= s.max {
			return false, ErrFull
		}
	}
	s.m[key] = exp
	return true, nil
}

// Len is the number of records held, expired ones included until a sweep.
func (s *Memory) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *Memory) sweep(now time.Time) {
	for k, until := range s.m {
		if !now.Before(until) {
			delete(s.m, k)
		}
	}
}
