package jwks_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/jwks"
)

func TestValidateNamesEachEntry(t *testing.T) {
	problems := func(err error) []*jwks.ConfigError {
		t.Helper()
		var out []*jwks.ConfigError
		joined, ok := err.(interface{ Unwrap() []error })
		if !ok {
			t.Fatalf("not a joined error: %v", err)
		}
		for _, e := range joined.Unwrap() {
			var ce *jwks.ConfigError
			if !errors.As(e, &ce) {
				t.Fatalf("not a *ConfigError: %v", e)
			}
			out = append(out, ce)
		}
		return out
	}
	var ce *jwks.ConfigError
	if err := jwks.Validate(nil); !errors.As(err, &ce) || ce.Field != "" || err.Error() != "at least one issuer is required" {
		t.Fatalf("no issuers: %v", err)
	}
	if err := jwks.Validate([]jwks.Config{{Issuer: "https://a.example"}, {Issuer: "https://b.example"}}); err != nil {
		t.Fatal(err)
	}

	cfgs := []jwks.Config{{Issuer: "https://a.example"}, {Issuer: "http://b.example"}, {Issuer: "https://a.example"}}
	err := jwks.Validate(cfgs)
	got := problems(err)
	if len(got) != 2 ||
		got[0].Field != "[1].Issuer" || !strings.Contains(got[0].Problem, "plain http") ||
		got[1].Field != "[2].Issuer" || !strings.Contains(got[1].Problem, "listed twice: entry 0 has the same issuer") || got[1].Issuer != "https://a.example" {
		t.Fatalf("problems: %v", err)
	}
	if g, err := jwks.NewGroup(context.Background(), cfgs, jwks.Options{Logger: quiet}); g != nil || err == nil {
		t.Fatalf("NewGroup of a bad list: %v, %v", g, err)
	}
	// Two entries without issuer are two missing issuers, not a duplicate.
	for _, p := range problems(jwks.Validate([]jwks.Config{{}, {}})) {
		if strings.Contains(p.Problem, "twice") {
			t.Fatalf("empty issuers reported as duplicates: %v", p)
		}
	}

	srv := lightServer(t)
	set := newSet(t, srv, nil)
	if _, err := jwks.GroupOf(set, set); !errors.As(err, &ce) || ce.Field != "Issuer" || ce.Issuer != srv.Issuer || !strings.Contains(ce.Problem, "twice") {
		t.Fatalf("GroupOf with an issuer twice: %v", err)
	}
	// A Group made with GroupOf borrows its sets: closing it leaves them running.
	g, err := jwks.GroupOf(set)
	if err != nil {
		t.Fatal(err)
	}
	ready(t, set)
	g.Close()
	if err := set.Refresh(context.Background()); err != nil {
		t.Fatalf("a set closed by a Group that borrowed it: %v", err)
	}
}

func TestGroupReadiness(t *testing.T) {
	// A Group is ready when every set is, and WaitReady names the issuers that are not.
	up, down := lightServer(t), lightServer(t)
	down.SetDown(true)
	ok, notYet := newSet(t, up, nil), newSet(t, down, nil)
	ready(t, ok)
	g, err := jwks.GroupOf(ok, notYet)
	if err != nil {
		t.Fatal(err)
	}
	if g.Ready() {
		t.Fatal("a group with a set that never loaded is ready")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = g.WaitReady(ctx)
	if !errors.Is(err, jwks.ErrKeysUnavailable) || !strings.Contains(err.Error(), `issuer "`+down.Issuer+`"`) || strings.Contains(err.Error(), `issuer "`+up.Issuer+`"`) {
		t.Fatalf("WaitReady = %v, want the issuer that did not load named, only it", err)
	}
	if only, _ := jwks.GroupOf(ok); !only.Ready() || only.WaitReady(ctx) != nil {
		t.Fatal("a group of loaded sets is not ready")
	}
	// Loaded keys win over a context that is already done, every time (a select between
	// the two would pick at random).
	for range 100 {
		if err := ok.WaitReady(ctx); err != nil {
			t.Fatalf("WaitReady of a loaded set with a done context: %v", err)
		}
	}
}
