package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tokengate/tokengate/middleware"
)

// keyProblems waits, at most timeout, until every issuer of gate has its keys or has
// failed its first attempt to load them, and returns one line per issuer without keys,
// saying why. It does not wait out the timeout for an issuer whose first fetch failed:
// a discovery document that names another issuer, or a JWKS that is not one, does not
// heal by waiting, and the user should hear at once.
func keyProblems(ctx context.Context, gate *middleware.Gate, timeout time.Duration) []string {
	group := gate.KeySets()
	if group == nil {
		return nil
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		settled := true
		for _, set := range group.Sets() {
			if st := set.Status(); !st.Ready && st.LastError == nil {
				settled = false
			}
		}
		if settled || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return []string{ctx.Err().Error()}
		case <-tick.C:
		}
	}
	var out []string
	for _, set := range group.Sets() {
		st := set.Status()
		switch {
		case st.Ready:
		case st.LastError != nil:
			out = append(out, fmt.Sprintf("the keys of %s could not be loaded: %v", st.Issuer, st.LastError))
		default:
			out = append(out, fmt.Sprintf("the keys of %s were not loaded within %s", st.Issuer, timeout))
		}
	}
	return out
}

// configWorks starts a Gate of cfg long enough to load every issuer's keys, for
// --check-config: a file can be valid and still not work (an issuer with a trailing
// slash that its discovery document does not have, a JWKS that cannot be fetched).
// It returns what does not work; err when no Gate can be made of cfg.
func configWorks(ctx context.Context, cfg middleware.Config) ([]string, error) {
	gate, err := middleware.New(ctx, cfg, middleware.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer gate.Close()
	return keyProblems(ctx, gate, 15*time.Second), nil
}
