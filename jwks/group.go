package jwks

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/internal/joined"
)

// Group holds the key sets of every trusted issuer, one Set each, never merged: a key
// of issuer A never verifies a token that claims to come from issuer B (RFC 8725 §3.8,
// docs/standards.md X13).
type Group struct {
	sets     map[string]*Set
	order    []*Set
	borrowed bool // made by GroupOf: the caller owns the sets
}

// GroupOf groups sets that the caller started and keeps owning (Close on the Group
// leaves them running): the sidecar shares one Set per issuer between the Gates of
// successive configurations, so that a reload does not fetch keys again.
func GroupOf(sets ...*Set) (*Group, error) {
	g := &Group{sets: make(map[string]*Set, len(sets)), borrowed: true}
	for _, s := range sets {
		if _, dup := g.sets[s.Issuer()]; dup {
			return nil, &ConfigError{Issuer: s.Issuer(), Field: "Issuer", Problem: "is listed twice"}
		}
		g.sets[s.Issuer()] = s
		g.order = append(g.order, s)
	}
	return g, nil
}

// NewGroup validates every configuration first, reporting all problems at once (each a
// *ConfigError; a problem of the i-th entry has Field prefixed "[i]."), then
// starts one Set per issuer. Its goroutines stop when ctx is cancelled or Close is
// called.
func NewGroup(ctx context.Context, cfgs []Config, opts Options) (*Group, error) {
	checked, err := validateAll(cfgs)
	if err != nil {
		return nil, err
	}
	g := &Group{sets: make(map[string]*Set, len(checked))}
	for _, c := range checked {
		s, err := newSet(ctx, c.cfg, c.allowed, c.roots, opts)
		if err != nil {
			g.Close()
			return nil, err
		}
		g.sets[c.cfg.Issuer] = s
		g.order = append(g.order, s)
	}
	return g, nil
}

// Validate checks issuer configurations as NewGroup does, without starting anything, so
// that a caller can report these problems together with its own.
func Validate(cfgs []Config) error {
	_, err := validateAll(cfgs)
	return err
}

type checkedConfig struct {
	cfg     Config
	allowed algSet
	roots   *x509.CertPool
}

func validateAll(cfgs []Config) ([]checkedConfig, error) {
	if len(cfgs) == 0 {
		return nil, &ConfigError{Problem: "at least one issuer is required"}
	}
	var (
		errs []error
		ok   []checkedConfig
		seen = map[string]int{}
	)
	for i, c := range cfgs {
		c = c.withDefaults()
		allowed, roots, err := c.validate()
		if err != nil {
			for _, e := range joined.Flatten(err) {
				var ce *ConfigError
				if errors.As(e, &ce) {
					ce.Field = fmt.Sprintf("[%d].%s", i, ce.Field)
				}
				errs = append(errs, e)
			}
		}
		if j, dup := seen[c.Issuer]; dup && c.Issuer != "" {
			errs = append(errs, &ConfigError{Issuer: c.Issuer, Field: fmt.Sprintf("[%d].Issuer", i), Problem: fmt.Sprintf("is listed twice: entry %d has the same issuer", j)})
		}
		seen[c.Issuer] = i
		ok = append(ok, checkedConfig{c, allowed, roots})
	}
	return ok, errors.Join(errs...)
}

// Set returns the key set of an issuer, compared byte for byte.
func (g *Group) Set(issuer string) (*Set, bool) {
	s, ok := g.sets[issuer]
	return s, ok
}

// Sets returns every key set, in configuration order.
func (g *Group) Sets() []*Set { return g.order }

// Key returns the key for token from the set of issuer only, which the caller reads
// from the token's (not yet verified) iss claim. An issuer that is not configured is
// ErrUnknownIssuer.
func (g *Group) Key(ctx context.Context, issuer string, token *jwt.Token) (any, error) {
	s, ok := g.sets[issuer]
	if !ok {
		return nil, ErrUnknownIssuer
	}
	return s.Key(ctx, token)
}

// Recheck is Set.Recheck on the set of issuer.
func (g *Group) Recheck(ctx context.Context, issuer, kid string) bool {
	s, ok := g.sets[issuer]
	return ok && s.Recheck(ctx, kid)
}

// Removals is the sum of the sets' Removals: it changes whenever any issuer's set loses
// a key. middleware's cache of verified tokens reads it on every hit.
func (g *Group) Removals() uint64 {
	var n uint64
	for _, s := range g.order {
		n += s.Removals()
	}
	return n
}

// Ready reports whether every issuer's keys were loaded at least once.
func (g *Group) Ready() bool {
	for _, s := range g.order {
		if !s.Ready() {
			return false
		}
	}
	return true
}

// WaitReady waits until every issuer's keys are loaded, ctx is done, or a set is closed.
func (g *Group) WaitReady(ctx context.Context) error {
	var errs []error
	for _, s := range g.order {
		if err := s.WaitReady(ctx); err != nil {
			errs = append(errs, fmt.Errorf("issuer %q: %w", s.Issuer(), err))
		}
	}
	return errors.Join(errs...)
}

// Close stops every set's goroutines and waits for them; for a Group made with GroupOf
// it does nothing.
func (g *Group) Close() {
	if g.borrowed {
		return
	}
	for _, s := range g.order {
		s.Close()
	}
}
