package policy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/middleware"
)

func TestStripInbound(t *testing.T) {
	id := newIdentity(map[string]string{"sub": "X-User", "tenant": "Tenant"})
	h := http.Header{}
	for _, name := range []string{"X-User", "x-user", "X_User", "X-USER", "x_uSeR", "Tenant", "tenant", "X-Auth-Anything", "X_AUTH_ROLE", "Content-Type", "X-Other"} {
		h[name] = []string{"spoof"}
	}
	id.StripInbound(h)
	if len(h) != 2 || h.Get("Content-Type") == "" || h.Get("X-Other") == "" {
		t.Fatalf("left %v", h)
	}
	if got := strings.Join(id.Headers(), " "); got != "X-User Tenant" {
		t.Fatalf("Headers() = %s", got)
	}
}

func TestClaimValues(t *testing.T) {
	raw := map[string]json.RawMessage{
		"sub":    json.RawMessage(`"alice"`),
		"name":   json.RawMessage(`"Zoë 100%"`),
		"groups": json.RawMessage(`["a","b",3]`),
		"n":      json.RawMessage(`42`),
		"ok":     json.RawMessage(`true`),
		"obj":    json.RawMessage(`{ "a" : 1 }`),
		"none":   json.RawMessage(`null`),
		"ctl":    json.RawMessage(`"a\r\nb"`),
	}
	c := &middleware.Claims{Raw: raw, Scopes: []string{"a", "b"}}
	for claim, want := range map[string]string{
		"sub": "alice", "name": "Zo%C3%AB 100%25", "groups": "a,b,3", "n": "42", "ok": "true", "obj": `{"a":1}`, "scope": "a b",
	} {
		if got, ok := claimValue(c, claim); !ok || got != want {
			t.Errorf("%s = %q %v, want %q", claim, got, ok, want)
		}
	}
	for _, claim := range []string{"none", "absent"} {
		if _, ok := claimValue(c, claim); ok {
			t.Errorf("%s gave a value", claim)
		}
	}
	if err := newIdentity(map[string]string{"ctl": "X-Ctl"}).Check(c); err == nil {
		t.Error("control characters accepted")
	}
	if err := newIdentity(map[string]string{"name": "X-Name"}).Check(c); err != nil {
		t.Errorf("non-ASCII refused: %v", err)
	}
}
