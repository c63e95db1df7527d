package dpop

import "sync"

// maxCachedHeaders bounds the header cache: one entry per client key in use, each a few
// hundred bytes.
const maxCachedHeaders = 4096

// headerCache remembers the headers of proofs that verified, by their exact base64url
// segment: the same bytes decode to the same key, so a client's next proof skips
// decoding its header, parsing its jwk and computing the thumbprint. Only a header whose
// proof passed every check gets in, so that a flood of made-up headers cannot fill it.
// When full it starts again empty: a few misses, never a wrong answer.
type headerCache struct {
	mu sync.RWMutex
	m  map[string]*proofHeader
}

func (c *headerCache) get(seg string) *proofHeader {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[seg]
}

func (c *headerCache) put(seg string, h *proofHeader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedHeaders {
		c.m = make(map[string]*proofHeader)
	}
	c.m[seg] = h
}
