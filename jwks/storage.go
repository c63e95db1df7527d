package jwks

import (
	"context"
	"crypto"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/MicahParks/jwkset"
)

// snapshot is an immutable index of one issuer's usable keys. A refresh builds a new
// one and swaps it in whole, so that a look-up reads it without a lock and a key that
// the issuer removed (revoked) is gone at once (docs/standards.md X49).
type snapshot struct {
	all   []jwkset.JWK
	byKID map[string]jwkset.JWK
	// only[i] is the single key that fits algorithm bit i when exactly one key of the
	// set does, for tokens without a kid; nil otherwise.
	only [16]any
}

func newSnapshot(keys []jwkset.JWK) *snapshot {
	s := &snapshot{all: keys, byKID: make(map[string]jwkset.JWK, len(keys))}
	var count [16]int
	for _, k := range keys {
		m := k.Marshal()
		if m.KID != "" {
			if _, dup := s.byKID[m.KID]; !dup {
				s.byKID[m.KID] = k
			}
		}
		fits := keyAlgs(k.Key())
		if own := algBit(string(m.ALG)); own != 0 {
			fits &= own
		}
		for i := range count {
			if fits&(1<<i) != 0 {
				count[i]++
				s.only[i] = k.Key()
			}
		}
	}
	for i, n := range count {
		if n != 1 {
			s.only[i] = nil
		}
	}
	return s
}

// onlyKeyFor returns the one key that fits alg, or nil when none or several do.
func (s *snapshot) onlyKeyFor(alg algSet) any {
	for i := range s.only {
		if alg == 1<<i {
			return s.only[i]
		}
	}
	return nil
}

// storage is the jwkset.Storage of one issuer: the refresher fills it with keys that
// passed parseKey, and keyfunc reads it. Its KeyRead is where an unknown kid turns into
// a bounded, shared, rate-limited refresh instead of keyfunc's minute-long wait.
type storage struct {
	snap atomic.Pointer[snapshot]
	// writeMu serialises writers; readers never take it.
	writeMu sync.Mutex
	// onMiss is called by KeyRead for a kid the snapshot lacks. It returns the key
	// after a refresh, or ErrUnknownKey / ErrKeysUnavailable.
	onMiss func(ctx context.Context, kid string) (jwkset.JWK, error)
	// removals counts the writes that took a key away (removed, or replaced under its
	// kid): caches of verified tokens compare it to drop what a revoked key verified.
	removals atomic.Uint64
}

var _ jwkset.Storage = (*storage)(nil)

func newStorage() *storage {
	st := &storage{}
	st.snap.Store(newSnapshot(nil))
	return st
}

func (st *storage) load() *snapshot { return st.snap.Load() }

// KeyRead returns the key with this kid. A known kid costs one map look-up and no
// allocation.
func (st *storage) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	if k, ok := st.snap.Load().byKID[kid]; ok {
		return k, nil
	}
	if st.onMiss == nil {
		return jwkset.JWK{}, ErrUnknownKey
	}
	return st.onMiss(ctx, kid)
}

// readCached is KeyRead without the miss handling.
func (st *storage) readCached(kid string) (jwkset.JWK, bool) {
	k, ok := st.snap.Load().byKID[kid]
	return k, ok
}

func (st *storage) KeyReadAll(context.Context) ([]jwkset.JWK, error) {
	return slices.Clone(st.snap.Load().all), nil
}

func (st *storage) KeyReplaceAll(_ context.Context, given []jwkset.JWK) error {
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	st.replace(slices.Clone(given))
	return nil
}

// replace installs keys, counting a removal when a key of the old set is not among
// them. The caller holds writeMu.
func (st *storage) replace(keys []jwkset.JWK) {
	old := st.snap.Load().all
	st.snap.Store(newSnapshot(keys))
	for _, o := range old {
		if !slices.ContainsFunc(keys, func(k jwkset.JWK) bool { return sameKey(o, k) }) {
			st.removals.Add(1)
			return
		}
	}
}

// sameKey reports whether a and b are the same public key under the same kid.
func sameKey(a, b jwkset.JWK) bool {
	if a.Marshal().KID != b.Marshal().KID {
		return false
	}
	ak, ok := a.Key().(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b.Key())
}

func (st *storage) KeyWrite(_ context.Context, jwk jwkset.JWK) error {
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	keys := slices.DeleteFunc(slices.Clone(st.snap.Load().all), func(k jwkset.JWK) bool {
		return jwk.Marshal().KID != "" && k.Marshal().KID == jwk.Marshal().KID
	})
	st.replace(append(keys, jwk))
	return nil
}

func (st *storage) KeyDelete(_ context.Context, kid string) (bool, error) {
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	old := st.snap.Load().all
	keys := slices.DeleteFunc(slices.Clone(old), func(k jwkset.JWK) bool { return k.Marshal().KID == kid })
	st.replace(keys)
	return len(keys) != len(old), nil
}

// memory copies the keys into jwkset's own storage, whose JSON and Marshal methods the
// remaining Storage methods delegate to; they are not on the request path.
func (st *storage) memory(ctx context.Context) *jwkset.MemoryJWKSet {
	m := jwkset.NewMemoryStorage()
	_ = m.KeyReplaceAll(ctx, slices.Clone(st.snap.Load().all))
	return m
}

func (st *storage) JSON(ctx context.Context) (json.RawMessage, error) {
	return st.memory(ctx).JSON(ctx)
}

func (st *storage) JSONPublic(ctx context.Context) (json.RawMessage, error) {
	return st.memory(ctx).JSONPublic(ctx)
}

func (st *storage) JSONPrivate(ctx context.Context) (json.RawMessage, error) {
	// The set never holds private keys (parseKey refuses them), so this is the same as
	// JSONPublic.
	return st.memory(ctx).JSONPublic(ctx)
}

func (st *storage) JSONWithOptions(ctx context.Context, m jwkset.JWKMarshalOptions, v jwkset.JWKValidateOptions) (json.RawMessage, error) {
	return st.memory(ctx).JSONWithOptions(ctx, m, v)
}

func (st *storage) Marshal(ctx context.Context) (jwkset.JWKSMarshal, error) {
	return st.memory(ctx).Marshal(ctx)
}

func (st *storage) MarshalWithOptions(ctx context.Context, m jwkset.JWKMarshalOptions, v jwkset.JWKValidateOptions) (jwkset.JWKSMarshal, error) {
	return st.memory(ctx).MarshalWithOptions(ctx, m, v)
}
