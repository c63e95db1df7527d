package jwkstest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAudience is the aud of minted tokens unless WithAudience says otherwise.
const DefaultAudience = "https://api.example.com"

// Paths the server answers on, relative to its URL.
const (
	JWKSPath           = "/jwks"
	TokenPath          = "/token"
	OIDCDiscoveryPath  = "/.well-known/openid-configuration"
	OAuthDiscoveryPath = "/.well-known/oauth-authorization-server"
)

// Server is an in-process OAuth 2.0 authorization server on a loopback port, in the
// spirit of net/http/httptest: it publishes discovery metadata and a JWKS, mints access
// tokens (through Mint, or its token endpoint for the client_credentials grant), rotates
// keys, and misbehaves on request (outage, slowness, garbage, oversized bodies,
// redirects) while counting what it was asked.
//
// It is for tests, examples and the demo only: anyone who can reach it gets tokens.
type Server struct {
	// URL is the base URL of the server, http://127.0.0.1:port (https with WithTLS).
	URL string
	// Issuer is the iss of its tokens and the base of its discovery documents: URL, plus
	// the path of WithIssuerPath.
	Issuer string

	srv      *httptest.Server
	audience string
	now      func() time.Time

	mu            sync.Mutex
	keys          []*Key          // every key the server knows, in creation order
	published     map[string]bool // kids in the JWKS
	signing       string          // kid that signs by default
	extra         []json.RawMessage
	body          []byte // replaces the JWKS document when set
	down          bool
	delay         time.Duration
	garbage       bool
	oversize      int
	redirect      string
	cacheControl  string
	etags         bool
	discIssuer    *string
	oidc, rfc8414 bool
	clients       map[string]Client
	tokenTTL      time.Duration
	rotations     int

	jwksFetches      atomic.Int64
	discoveryFetches atomic.Int64
	notModified      atomic.Int64

	intro introspection // the introspection endpoint (introspection.go)
}

// Client is a client registered for the client_credentials grant.
type Client struct {
	ID, Secret string
	// Scopes the client may ask for; a request without scope gets all of them.
	Scopes []string
	// Audiences the client may ask for with the resource (RFC 8707) or audience
	// parameter; empty allows the server's default audience only.
	Audiences []string
}

// Option configures NewServer.
type Option func(*config)

type config struct {
	keys     []*Key
	tls      bool
	path     string
	audience string
	now      func() time.Time
	listen   string
}

// WithKeys replaces the default keys. The first one signs.
func WithKeys(keys ...*Key) Option { return func(c *config) { c.keys = keys } }

// WithTLS serves https with a self-signed certificate (see CertPEM).
func WithTLS() Option { return func(c *config) { c.tls = true } }

// WithIssuerPath gives the issuer a path, like Keycloak's /realms/name, so discovery
// URLs differ between OpenID Connect and RFC 8414.
func WithIssuerPath(p string) Option { return func(c *config) { c.path = "/" + strings.Trim(p, "/") } }

// WithAudience sets the aud of minted tokens.
func WithAudience(aud string) Option { return func(c *config) { c.audience = aud } }

// WithClock sets the clock of iat and exp.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithListen serves on this address (for example 127.0.0.1:9000) instead of a free
// loopback port. The issuer URL is made from it, so it should be one clients can reach.
func WithListen(addr string) Option { return func(c *config) { c.listen = addr } }

// NewServer starts a server. Unless WithKeys says otherwise it has three published keys:
// "rsa-1" (RS256, the signing key), "ec-1" (ES256) and "ed-1" (EdDSA).
func NewServer(opts ...Option) (*Server, error) {
	c := config{audience: DefaultAudience, now: time.Now}
	for _, o := range opts {
		o(&c)
	}
	if c.keys == nil {
		for _, k := range [][2]string{{"rsa-1", "RS256"}, {"ec-1", "ES256"}, {"ed-1", "EdDSA"}} {
			key, err := GenerateKey(k[0], k[1])
			if err != nil {
				return nil, err
			}
			c.keys = append(c.keys, key)
		}
	}
	if len(c.keys) == 0 {
		return nil, fmt.Errorf("jwkstest: a server needs at least one key")
	}
	s := &Server{
		audience:     c.audience,
		now:          c.now,
		keys:         slices.Clone(c.keys),
		published:    map[string]bool{},
		signing:      c.keys[0].KID,
		cacheControl: "public, max-age=300",
		etags:        true,
		oidc:         true,
		rfc8414:      true,
		clients:      map[string]Client{},
		tokenTTL:     5 * time.Minute,
	}
	for _, k := range c.keys {
		s.published[k.KID] = true
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	// Clients that refuse the test certificate are what some tests check; their
	// handshake errors are not news.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if c.listen != "" {
		if err := s.srv.Listener.Close(); err != nil {
			return nil, err
		}
		l, err := listen(c.listen)
		if err != nil {
			return nil, err
		}
		s.srv.Listener = l
	}
	if c.tls {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	s.URL = s.srv.URL
	s.Issuer = s.URL + c.path
	return s, nil
}

// MustNewServer is NewServer that panics, for tests and examples.
func MustNewServer(opts ...Option) *Server {
	s, err := NewServer(opts...)
	if err != nil {
		panic(err)
	}
	return s
}

// Close shuts the server down: open connections are cut, then it waits for handlers to
// return.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// JWKSURI is the URL of the key set.
func (s *Server) JWKSURI() string { return s.URL + JWKSPath }

// TokenURL is the URL of the token endpoint.
func (s *Server) TokenURL() string { return s.URL + TokenPath }

// Audience is the default aud of minted tokens.
func (s *Server) Audience() string { return s.audience }

// Client returns an http.Client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// CertPEM returns the server's certificate in PEM (with WithTLS), for a caFile.
func (s *Server) CertPEM() []byte {
	if s.srv.Certificate() == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// --- keys ---

// SigningKey returns the key that signs by default.
func (s *Server) SigningKey() *Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, _ := s.keyLocked(s.signing)
	return k
}

// KeyByID returns a key the server knows.
func (s *Server) KeyByID(kid string) (*Key, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keyLocked(kid)
}

func (s *Server) keyLocked(kid string) (*Key, bool) {
	for _, k := range s.keys {
		if k.KID == kid {
			return k, true
		}
	}
	return nil, false
}

func (s *Server) resolveKey(k *Key) (*Key, error) {
	if k == nil {
		return s.SigningKey(), nil
	}
	if k.Private != nil {
		return k, nil
	}
	if known, ok := s.KeyByID(k.KID); ok {
		return known, nil
	}
	return nil, fmt.Errorf("jwkstest: no key %q", k.KID)
}

// AddKey adds a key, published in the JWKS or not (a key the server signs with before
// it publishes it, as a careless rotation does).
func (s *Server) AddKey(k *Key, publish bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, k)
	s.published[k.KID] = publish
}

// ReplaceKey puts k in place of the key with its kid, published as that key was: what
// an issuer that made a new key but kept its kid serves (a development server
// restarted without its key, a key store restored from backup). A resource server that
// trusts the kid refuses the new tokens until it fetches the keys again.
func (s *Server) ReplaceKey(k *Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, old := range s.keys {
		if old.KID == k.KID {
			s.keys[i] = k
			return
		}
	}
	s.keys = append(s.keys, k)
	s.published[k.KID] = true
}

// Publish adds a known key to the JWKS, or takes it out (revocation).
func (s *Server) Publish(kid string, publish bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.published[kid] = publish
}

// Published lists the kids of the keys in the JWKS, in the order they were added.
func (s *Server) Published() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kids []string
	for _, k := range s.keys {
		if s.published[k.KID] {
			kids = append(kids, k.KID)
		}
	}
	return kids
}

// SetSigningKey makes a known key the one that signs by default.
func (s *Server) SetSigningKey(kid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signing = kid
}

// Rotate generates a key of the same algorithm as the signing key, publishes it and
// makes it the signing key at once. The old key stays published until
// Publish(old, false). A resource server learns the new key from its first token
// (through an unknown-kid refresh, which it rate-limits); to publish a key ahead of
// using it, call AddKey and, later, SetSigningKey.
func (s *Server) Rotate() (*Key, error) {
	s.mu.Lock()
	old, ok := s.keyLocked(s.signing)
	if !ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("jwkstest: the signing key %q is not a known key", s.signing)
	}
	base := old.KID
	if i := strings.LastIndex(base, "-r"); i > 0 {
		base = base[:i]
	}
	var kid string
	for {
		s.rotations++
		kid = fmt.Sprintf("%s-r%d", base, s.rotations)
		if _, taken := s.keyLocked(kid); !taken {
			break
		}
	}
	s.mu.Unlock()
	k, err := GenerateKey(kid, old.Alg)
	if err != nil {
		return nil, err
	}
	s.AddKey(k, true)
	s.SetSigningKey(kid)
	return k, nil
}

// --- behaviour switches ---

// SetExtraJWKs appends raw members to the published "keys" array: bad keys, oct keys,
// encryption keys, duplicates.
func (s *Server) SetExtraJWKs(raw ...json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extra = slices.Clone(raw)
}

// SetJWKSBody serves body as the JWKS document instead of the keys; nil undoes it.
func (s *Server) SetJWKSBody(body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = bytes.Clone(body)
}

// SetDown makes every endpoint answer 503 (an outage), or not.
func (s *Server) SetDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

// SetDelay holds every JWKS and discovery response for d (or until the client gives up).
func (s *Server) SetDelay(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// SetGarbage makes the JWKS endpoint answer 200 with a body that is not JSON.
func (s *Server) SetGarbage(on bool) { s.mu.Lock(); s.garbage = on; s.mu.Unlock() }

// SetOversized pads the JWKS document with whitespace to n bytes (0 turns it off): a
// valid document that only a size cap refuses.
func (s *Server) SetOversized(n int) { s.mu.Lock(); s.oversize = n; s.mu.Unlock() }

// SetRedirect makes the JWKS endpoint answer 302 to url ("" turns it off). The same
// document is also served under JWKSPath + "/anything", a redirect target on the same
// origin.
func (s *Server) SetRedirect(url string) { s.mu.Lock(); s.redirect = url; s.mu.Unlock() }

// SetCacheControl sets the Cache-Control of JWKS responses ("" sends none).
func (s *Server) SetCacheControl(v string) { s.mu.Lock(); s.cacheControl = v; s.mu.Unlock() }

// SetETags turns ETag and If-None-Match support on (the default) or off.
func (s *Server) SetETags(on bool) { s.mu.Lock(); s.etags = on; s.mu.Unlock() }

// SetDiscoveryIssuer makes the discovery documents name this issuer instead of the
// real one (a mismatch a client must refuse); nil undoes it.
func (s *Server) SetDiscoveryIssuer(iss *string) { s.mu.Lock(); s.discIssuer = iss; s.mu.Unlock() }

// SetDiscovery says which discovery documents exist: OpenID Connect, RFC 8414.
func (s *Server) SetDiscovery(oidc, rfc8414 bool) {
	s.mu.Lock()
	s.oidc, s.rfc8414 = oidc, rfc8414
	s.mu.Unlock()
}

// SetTokenTTL sets the lifetime of tokens from the token endpoint (default 5 minutes).
func (s *Server) SetTokenTTL(d time.Duration) { s.mu.Lock(); s.tokenTTL = d; s.mu.Unlock() }

// AddClient registers a client for the token endpoint.
func (s *Server) AddClient(c Client) { s.mu.Lock(); s.clients[c.ID] = c; s.mu.Unlock() }

// JWKSFetches counts requests to the JWKS endpoint, answered or not.
func (s *Server) JWKSFetches() int { return int(s.jwksFetches.Load()) }

// DiscoveryFetches counts requests for discovery documents.
func (s *Server) DiscoveryFetches() int { return int(s.discoveryFetches.Load()) }

// NotModified counts JWKS requests answered 304.
func (s *Server) NotModified() int { return int(s.notModified.Load()) }

// JWKS returns the document the JWKS endpoint serves now (without padding).
func (s *Server) JWKS() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jwksLocked()
}

func (s *Server) jwksLocked() []byte {
	if s.body != nil {
		return s.body
	}
	keys := []json.RawMessage{}
	for _, k := range s.keys {
		if s.published[k.KID] {
			keys = append(keys, k.JWK())
		}
	}
	keys = append(keys, s.extra...)
	doc, _ := json.Marshal(map[string]any{"keys": keys})
	return doc
}

// --- HTTP ---

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down, delay := s.down, s.delay
	s.mu.Unlock()

	path := r.URL.Path
	isDiscovery := strings.Contains(path, "/.well-known/")
	isJWKS := path == JWKSPath || strings.HasPrefix(path, JWKSPath+"/")
	switch {
	case isJWKS:
		s.jwksFetches.Add(1)
	case isDiscovery:
		s.discoveryFetches.Add(1)
	case path == IntrospectionPath:
		s.intro.calls.Add(1)
	}
	if down {
		http.Error(w, "authorization server unavailable", http.StatusServiceUnavailable)
		return
	}
	if delay > 0 && (isJWKS || isDiscovery) {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	switch {
	case isJWKS && r.Method == http.MethodGet:
		s.serveJWKS(w, r)
	case isDiscovery && r.Method == http.MethodGet:
		s.serveDiscovery(w, r)
	case path == TokenPath:
		s.serveToken(w, r)
	case path == IntrospectionPath:
		s.serveIntrospection(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	doc := s.jwksLocked()
	garbage, oversize, redirect, cc, etags := s.garbage, s.oversize, s.redirect, s.cacheControl, s.etags
	s.mu.Unlock()

	if redirect != "" && r.URL.Path == JWKSPath {
		http.Redirect(w, r, redirect, http.StatusFound)
		return
	}
	if garbage {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><body>502 Bad Gateway</body></html>"))
		return
	}
	if oversize > len(doc) {
		doc = append(bytes.Repeat([]byte(" "), oversize-len(doc)), doc...)
	}
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	if etags {
		sum := sha256.Sum256(doc)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			s.notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(doc)
}

func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	oidc, rfc8414, lie := s.oidc, s.rfc8414, s.discIssuer
	s.mu.Unlock()

	// The issuer's path decides where each document lives: OpenID Connect appends the
	// well-known segment to the issuer, RFC 8414 inserts it before the issuer's path.
	issuerPath := strings.TrimPrefix(s.Issuer, s.URL)
	switch r.URL.Path {
	case issuerPath + OIDCDiscoveryPath:
		if !oidc {
			http.NotFound(w, r)
			return
		}
	case OAuthDiscoveryPath + issuerPath:
		if !rfc8414 {
			http.NotFound(w, r)
			return
		}
	default:
		http.NotFound(w, r)
		return
	}
	iss := s.Issuer
	if lie != nil {
		iss = *lie
	}
	s.mu.Lock()
	var scopes []string
	for _, c := range s.clients {
		scopes = append(scopes, c.Scopes...)
	}
	s.mu.Unlock()
	slices.Sort(scopes)
	s.mu.Lock()
	var algs []string
	for _, k := range s.keys {
		if s.published[k.KID] && !slices.Contains(algs, k.Alg) {
			algs = append(algs, k.Alg)
		}
	}
	s.mu.Unlock()
	meta := map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              s.JWKSURI(),
		"token_endpoint":                        s.TokenURL(),
		"introspection_endpoint":                s.IntrospectionURL(),
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": algs,
	}
	if scopes = slices.Compact(scopes); len(scopes) > 0 {
		meta["scopes_supported"] = scopes
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(meta)
}
