package jwkstest

import (
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

func listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// serveToken is the token endpoint for the client_credentials grant (RFC 6749 §4.4),
// with client_secret_basic or client_secret_post authentication, scope, and the
// resource (RFC 8707) or audience parameter choosing aud. It answers errors the RFC
// 6749 §5.2 way.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		tokenError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: the client id and secret are form-encoded before they go
		// into Basic authentication.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			tokenError(w, http.StatusBadRequest, "invalid_request", "the Basic credentials are not form-encoded")
			return
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	s.mu.Lock()
	client, known := s.clients[id]
	ttl := s.tokenTTL
	s.mu.Unlock()
	if !known || subtle.ConstantTimeCompare([]byte(secret), []byte(client.Secret)) != 1 {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		}
		tokenError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		return
	}

	scopes := client.Scopes
	if req := strings.Fields(r.PostForm.Get("scope")); len(req) > 0 {
		for _, sc := range req {
			if !slices.Contains(client.Scopes, sc) {
				tokenError(w, http.StatusBadRequest, "invalid_scope", "the client may not ask for scope "+sc)
				return
			}
		}
		scopes = slices.Compact(slices.Sorted(slices.Values(req)))
	}

	audiences := r.PostForm["resource"]
	if len(audiences) == 0 {
		audiences = r.PostForm["audience"]
	}
	allowed := client.Audiences
	if len(allowed) == 0 {
		allowed = []string{s.audience}
	}
	if len(audiences) == 0 {
		audiences = allowed[:1]
	}
	for _, a := range audiences {
		if !slices.Contains(allowed, a) {
			tokenError(w, http.StatusBadRequest, "invalid_target", "the client may not ask for resource "+a)
			return
		}
	}
	var aud any = audiences
	if len(audiences) == 1 {
		aud = audiences[0]
	}

	claims := Claims{
		"aud":       aud,
		"sub":       client.ID,
		"client_id": client.ID,
		"exp":       s.now().Add(ttl).Unix(),
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	tok, err := s.Mint(claims)
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error", "signing failed")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	resp := map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(ttl.Seconds()),
	}
	if len(scopes) > 0 {
		resp["scope"] = strings.Join(scopes, " ")
	}
	_ = json.NewEncoder(w).Encode(resp)
}

func tokenError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}
