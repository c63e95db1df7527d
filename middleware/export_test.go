package middleware

// CacheLen exposes the size of a Gate's verified-token cache to the external tests.
func CacheLen(g *Gate) int {
	if g.cache == nil {
		return 0
	}
	return g.cache.entries.len()
}
