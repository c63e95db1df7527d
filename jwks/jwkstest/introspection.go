package jwkstest

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"maps"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// IntrospectionPath is where the server answers token introspection (RFC 7662),
// relative to its URL.
const IntrospectionPath = "/introspect"

// IntrospectionFault is a way the introspection endpoint misbehaves, for fault tests
// (SetIntrospectionFault). SetDown(true) is another: every endpoint answers 503.
type IntrospectionFault int

const (
	// IntrospectionNormal answers as RFC 7662 says (the default).
	IntrospectionNormal IntrospectionFault = iota
	// IntrospectionSlow holds every answer until the client gives up (or a minute).
	IntrospectionSlow
	// IntrospectionDown closes the connection without an answer.
	IntrospectionDown
	// IntrospectionGarbage answers 200 with a body that is not JSON.
	IntrospectionGarbage
	// IntrospectionOversized pads the right answer with whitespace to more than
	// 1 MiB (OversizedIntrospection bytes): a valid answer that only a size cap
	// refuses.
	IntrospectionOversized
	// IntrospectionMissingActive answers the token's claims without active.
	IntrospectionMissingActive
)

// OversizedIntrospection is the size of an IntrospectionOversized answer.
const OversizedIntrospection = 1<<20 + 1<<10

func (f IntrospectionFault) String() string {
	switch f {
	case IntrospectionNormal:
		return "normal"
	case IntrospectionSlow:
		return "slow"
	case IntrospectionDown:
		return "down"
	case IntrospectionGarbage:
		return "garbage"
	case IntrospectionOversized:
		return "oversized"
	case IntrospectionMissingActive:
		return "missingActive"
	}
	return "unknown"
}

// introspection is the state of the introspection endpoint.
type introspection struct {
	mu      sync.Mutex
	opaque  map[string]Claims // token → its answer
	revoked map[string]bool
	fault   IntrospectionFault
	calls   atomic.Int64
}

// IntrospectionURL is the URL of the introspection endpoint, which the discovery
// documents name as introspection_endpoint.
func (s *Server) IntrospectionURL() string { return s.URL + IntrospectionPath }

// MintOpaque returns a new opaque access token: random, not a JWS (no dots), known
// only to this server. Its introspection answer is the default claims (DefaultClaims)
// and "active": true, with claims laid over them (Absent removes a member, active
// among them). The server answers active false once its exp has passed on the
// server's clock, or once it is revoked.
func (s *Server) MintOpaque(claims Claims) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	token := "opaque_" + Encode(b[:])
	all := s.DefaultClaims()
	all["active"] = true
	maps.Copy(all, claims)
	s.intro.mu.Lock()
	defer s.intro.mu.Unlock()
	if s.intro.opaque == nil {
		s.intro.opaque = map[string]Claims{}
	}
	s.intro.opaque[token] = Claims(dropAbsent(all))
	return token
}

// Revoke makes the introspection endpoint answer {"active": false} for token, an
// opaque token or a JWT, from now on.
func (s *Server) Revoke(token string) {
	s.intro.mu.Lock()
	defer s.intro.mu.Unlock()
	if s.intro.revoked == nil {
		s.intro.revoked = map[string]bool{}
	}
	s.intro.revoked[token] = true
}

// SetIntrospectionFault makes the introspection endpoint misbehave as f says;
// IntrospectionNormal undoes it.
func (s *Server) SetIntrospectionFault(f IntrospectionFault) {
	s.intro.mu.Lock()
	s.intro.fault = f
	s.intro.mu.Unlock()
}

// IntrospectionCalls counts requests to the introspection endpoint, answered or not.
func (s *Server) IntrospectionCalls() int { return int(s.intro.calls.Load()) }

// serveIntrospection is the introspection endpoint (RFC 7662 §2): POST, a form with
// token (token_type_hint is ignored), client_secret_basic of a registered client
// (401 otherwise). It answers the claims of an opaque token it minted, or of a JWT
// signed by one of its keys with that key's alg, with "active": true; anything else,
// a revoked token, or one whose exp has passed, is {"active": false}.
func (s *Server) serveIntrospection(w http.ResponseWriter, r *http.Request) {
	s.intro.mu.Lock()
	fault := s.intro.fault
	s.intro.mu.Unlock()
	if fault == IntrospectionDown {
		panic(http.ErrAbortHandler) // net/http closes the connection without a word
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		tokenError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return
	}
	if fault == IntrospectionSlow {
		// With the body read, net/http watches the connection: a client that gives
		// up ends r's context.
		t := time.NewTimer(time.Minute)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if !s.basicClient(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="introspection"`)
		tokenError(w, http.StatusUnauthorized, "invalid_client", "client_secret_basic of a registered client is required")
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		tokenError(w, http.StatusBadRequest, "invalid_request", "no token")
		return
	}
	answer := s.introspect(token)
	w.Header().Set("Cache-Control", "no-store")
	switch fault {
	case IntrospectionGarbage:
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><body>502 Bad Gateway</body></html>"))
		return
	case IntrospectionMissingActive:
		delete(answer, "active")
	}
	body, err := json.Marshal(answer)
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error", "the claims do not marshal")
		return
	}
	if fault == IntrospectionOversized {
		body = append(body, bytes.Repeat([]byte(" "), OversizedIntrospection-len(body))...)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// basicClient reports whether r carries client_secret_basic credentials of a
// registered client: the id and secret form-encoded, then Basic (RFC 6749 §2.3.1).
func (s *Server) basicClient(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if !ok {
		return false
	}
	id, err1 := url.QueryUnescape(id)
	secret, err2 := url.QueryUnescape(secret)
	if err1 != nil || err2 != nil {
		return false
	}
	s.mu.Lock()
	client, known := s.clients[id]
	s.mu.Unlock()
	return known && subtle.ConstantTimeCompare([]byte(secret), []byte(client.Secret)) == 1
}

// introspect returns the answer for token.
func (s *Server) introspect(token string) map[string]any {
	inactive := map[string]any{"active": false}
	s.intro.mu.Lock()
	revoked := s.intro.revoked[token]
	claims, opaque := s.intro.opaque[token]
	s.intro.mu.Unlock()
	if revoked {
		return inactive
	}
	if !opaque {
		var ok bool
		if claims, ok = s.jwtClaims(token); !ok {
			return inactive
		}
		claims["active"] = true
	}
	if exp, ok := numericDate(claims["exp"]); ok && float64(s.now().Unix()) >= exp {
		return inactive
	}
	return maps.Clone(claims)
}

// jwtClaims returns the payload of a JWT signed by one of the server's keys (published
// or not) with the alg of that key.
func (s *Server) jwtClaims(token string) (Claims, bool) {
	if strings.Count(token, ".") != 2 {
		return nil, false
	}
	p := jwt.NewParser(jwt.WithoutClaimsValidation(), jwt.WithJSONNumber())
	var claims jwt.MapClaims
	_, err := p.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := s.KeyByID(kid)
		if !ok || k.Alg != t.Method.Alg() {
			return nil, jwt.ErrTokenUnverifiable
		}
		return k.Public(), nil
	})
	if err != nil {
		return nil, false
	}
	return Claims(claims), true
}

// numericDate reads a time claim as Mint and MintOpaque callers write it.
func numericDate(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, !math.IsNaN(n)
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}
