//go:build e2e

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// TestKeyReplacedUnderTheSameKID is an issuer that makes a new key and keeps its kid
// (a development issuer restarted without its key file, a key store restored from a
// backup), with the default refresh schedule: how long until the sidecar accepts the
// new key's tokens (issue 11). The sidecar fetches the keys again after the first
// token whose known kid fails its signature check, within the unknown-kid budget;
// before, it refused every new token until its next scheduled refresh (refresh.min,
// one minute, at the soonest).
func TestKeyReplacedUnderTheSameKID(t *testing.T) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: fmt.Sprintf(`upstream: %q
issuers:
  - issuer: %q
    audiences: [%q]
routes:
  - match: "/"
    scopes: [orders:read]
`, up.URL, as.Issuer, audience)})
	read := jwkstest.Claims{"scope": "orders:read"}
	if code, _, err := get(sc.URL+"/orders/1", as.MustMint(read)); err != nil || code != 200 {
		t.Fatalf("before the replacement: %d %v", code, err)
	}
	fetches := as.JWKSFetches()

	kid := as.SigningKey().KID
	as.ReplaceKey(jwkstest.MustGenerateKey(kid, as.SigningKey().Alg))
	replaced := time.Now()
	var first time.Duration
	var denied int
	for i := 0; ; i++ {
		code, _, err := get(sc.URL+"/orders/1", as.MustMint(read))
		if err != nil {
			t.Fatal(err)
		}
		if code == 200 {
			first = time.Since(replaced)
			break
		}
		denied++
		if time.Since(replaced) > 90*time.Second || i > 100000 {
			t.Fatalf("the new key's tokens still refused %s after the replacement (%d denials)", time.Since(replaced).Round(time.Second), denied)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := sc.Metrics(t)
	t.Logf("a key replaced under kid %s: the first token of the new key allowed %s after the replacement, after %d denials and %d JWKS fetches (%v with trigger signature)",
		kid, first.Round(time.Millisecond), denied, as.JWKSFetches()-fetches, e2etest.Sum(m, "tokengate_jwks_refreshes_total", `trigger="signature"`))
	if first > 5*time.Second || denied > 0 {
		t.Errorf("recovery took %s with %d denials; want the first token allowed", first, denied)
	}
}
