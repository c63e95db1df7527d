package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// nonces issues and checks server nonces (RFC 9449 §8) without state: a nonce is a
// time slot and its HMAC under a secret every replica shares, valid in its slot and
// the next, so that a nonce issued just before a slot ends still works for one period.
type nonces struct {
	secret []byte
	period time.Duration
}

func (n *nonces) slot(t time.Time) uint64 { return uint64(t.UnixNano() / int64(n.period)) }

func (n *nonces) issue(now time.Time) string {
	var b [8 + 16]byte
	binary.BigEndian.PutUint64(b[:8], n.slot(now))
	copy(b[8:], n.mac(b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (n *nonces) valid(nonce string, now time.Time) bool {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != 8+16 || !hmac.Equal(b[8:], n.mac(b[:8])) {
		return false
	}
	s, cur := binary.BigEndian.Uint64(b[:8]), n.slot(now)
	return s == cur || s+1 == cur
}

func (n *nonces) mac(slot []byte) []byte {
	m := hmac.New(sha256.New, n.secret)
	m.Write([]byte("tokengate dpop nonce\x00"))
	m.Write(slot)
	return m.Sum(nil)[:16]
}
