package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// clientFlag collects repeated --client id:secret:scope1,scope2 values.
type clientFlag []jwkstest.Client

func (c *clientFlag) String() string {
	var parts []string
	for _, cl := range *c {
		parts = append(parts, cl.ID+":***:"+strings.Join(cl.Scopes, ","))
	}
	return strings.Join(parts, " ")
}

func (c *clientFlag) Set(v string) error {
	cl, err := parseClient(v)
	if err != nil {
		return err
	}
	for _, have := range *c {
		if have.ID == cl.ID {
			// The server keeps one client per id: the second would silently win.
			return fmt.Errorf("client %q is given twice", cl.ID)
		}
	}
	*c = append(*c, cl)
	return nil
}

// Redact hides the secret when an environment variable's value is shown in an error.
func (c *clientFlag) Redact(v string) string { return redactSecret(v) }

// parseClient reads id:secret:scope1,scope2. Scopes may themselves hold ':', so only
// the first two separate fields.
func parseClient(v string) (jwkstest.Client, error) {
	parts := strings.SplitN(v, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return jwkstest.Client{}, fmt.Errorf("want id:secret:scope1,scope2 (scopes optional), got %q", redactSecret(v))
	}
	cl := jwkstest.Client{ID: parts[0], Secret: parts[1]}
	if len(parts) == 3 {
		for _, s := range strings.Split(parts[2], ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			if !validScope(s) {
				return jwkstest.Client{}, fmt.Errorf("scope %q: a scope is printable ASCII without space, '\"' or '\\' (RFC 6749 §3.3)", s)
			}
			cl.Scopes = append(cl.Scopes, s)
		}
	}
	return cl, nil
}

// validScope reports whether s is a scope-token: 1*NQCHAR of RFC 6749 §3.3.
func validScope(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

func redactSecret(v string) string {
	parts := strings.SplitN(v, ":", 3)
	if len(parts) >= 2 {
		parts[1] = "***"
	}
	return strings.Join(parts, ":")
}

// checkListen refuses a host that is not loopback. The issuer URL is made from the
// address the server listens on, so a wildcard host would name an issuer
// (http://[::]:8081) that no client can reach, and tokengate trusts a plain-http issuer
// only on loopback. It also keeps a server that hands out tokens to anyone on the
// machine it runs on.
func checkListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return nil
	}
	return errors.New("the host must be a loopback address (127.0.0.1, ::1 or localhost)")
}

// curlLine is a shell command that gets a token for c from tokenURL.
func curlLine(c jwkstest.Client, tokenURL string) string {
	// Basic credentials are form-encoded first (RFC 6749 §2.3.1); curl does not do it.
	creds := url.QueryEscape(c.ID) + ":" + url.QueryEscape(c.Secret)
	args := []string{"curl", "-s", "-u", shellQuote(creds), "-d", "grant_type=client_credentials"}
	if len(c.Scopes) > 0 {
		// A form must encode the space between scopes, and scopes may hold '&', '+'
		// or '%': --data-urlencode gets every one of them right.
		args = append(args, "--data-urlencode", shellQuote("scope="+strings.Join(c.Scopes, " ")))
	}
	return strings.Join(append(args, shellQuote(tokenURL)), " ")
}

// shellQuote quotes s for a POSIX shell unless every byte of it is safe bare.
func shellQuote(s string) string {
	safe := s != ""
	for i := 0; i < len(s) && safe; i++ {
		c := s[i]
		safe = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.,:/@%+=", c) >= 0
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func runIssuer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("issuer", "A development OAuth 2.0 authorization server: discovery, a JWKS, a token endpoint for\nthe client_credentials grant, key rotation (every --rotate-every, and on SIGHUP).\nEach key's kid is its RFC 7638 thumbprint. With --key-file the signing key is kept in\nthat file (created when missing), so a restarted issuer keeps its key and kid, and\n'tokengate token' can mint tokens with it. Never for production: anyone who can reach\nit gets tokens. The first line it prints is \"issuer: <URL>\".", stderr)
	listen := fs.String("listen", "127.0.0.1:8081", "loopback address to serve on (host:port; port 0 picks a free one)")
	audience := fs.String("audience", jwkstest.DefaultAudience, "aud of tokens whose request names no resource")
	ttl := fs.Duration("token-ttl", 5*time.Minute, "lifetime of issued tokens")
	alg := fs.String("alg", "RS256", "signing algorithm of generated keys (RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA)")
	rotateEvery := fs.Duration("rotate-every", 0, "rotate the signing key on this interval (0: only on SIGHUP); the previous key stays published")
	keyFile := fs.String("key-file", "", "keep the signing key in this PKCS #8 PEM file: read it when it exists, else write a new one; a rotation writes the new key there (default: in memory only)")
	var clients clientFlag
	fs.Var(&clients, "client", "a client id:secret:scope1,scope2 (repeatable; default demo-client:demo-secret:orders:read,orders:write)")
	if code, exit := parseOrExit(fs, args, stderr); exit {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "tokengate issuer: "+format+"\n", a...)
		return exitUsage
	}
	if *ttl <= 0 {
		return usageErr("%s %s: must be positive", fs.ref("token-ttl"), *ttl)
	}
	if *rotateEvery < 0 {
		return usageErr("%s %s: must not be negative", fs.ref("rotate-every"), *rotateEvery)
	}
	if err := checkListen(*listen); err != nil {
		return usageErr("%s %q: %v", fs.ref("listen"), *listen, err)
	}
	if len(clients) == 0 {
		clients = clientFlag{{ID: "demo-client", Secret: "demo-secret", Scopes: []string{"orders:read", "orders:write"}}}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	var key *jwkstest.Key
	var err error
	switch {
	case *keyFile == "":
		key, err = newDevKey(*alg)
		if err != nil {
			return usageErr("%s %q: %v", fs.ref("alg"), *alg, err)
		}
	default:
		var created bool
		key, created, err = loadOrCreateDevKey(*keyFile, *alg)
		if err != nil {
			return usageErr("%s %s: %v", fs.ref("key-file"), *keyFile, err)
		}
		if created {
			log.Info("a new signing key was written", "file", *keyFile, "kid", key.KID)
		}
	}

	srv, err := jwkstest.NewServer(jwkstest.WithListen(*listen), jwkstest.WithKeys(key), jwkstest.WithAudience(*audience))
	if err != nil {
		fmt.Fprintf(stderr, "tokengate issuer: %s %s: %v\n", fs.ref("listen"), *listen, err)
		return exitFail
	}
	defer srv.Close()
	srv.SetTokenTTL(*ttl)
	for _, c := range clients {
		srv.AddClient(c)
	}

	// Before the URLs are printed: a script that reads them and sends SIGHUP at once
	// must get a rotation, not SIGHUP's default action, which ends the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if *rotateEvery > 0 {
		t := time.NewTicker(*rotateEvery)
		defer t.Stop()
		tick = t.C
	}

	fmt.Fprint(stderr, `
  !!  tokengate issuer is a DEVELOPMENT authorization server.
  !!  Anyone who can reach it gets tokens. Never use it in production.

`)
	if *rotateEvery > 0 && *rotateEvery < *ttl {
		log.Warn("a key is unpublished two rotations after it starts signing, so tokens may stop verifying before they expire; make --rotate-every at least --token-ttl",
			"rotate_every", *rotateEvery, "token_ttl", *ttl)
	}
	first := clients[0]
	fmt.Fprintf(stdout, "issuer: %s\njwks: %s\ntoken: %s\naudience: %s\nkid: %s\n\nGet a token for %s (the access_token member of the answer):\n  %s\n",
		srv.Issuer, srv.JWKSURI(), srv.TokenURL(), *audience, key.KID, first.ID, curlLine(first, srv.TokenURL()))
	if *keyFile != "" {
		fmt.Fprintf(stdout, "\nOr mint one with the subject, scopes, audience and lifetime you choose:\n  tokengate token --key-file %s --issuer %s --alg %s --scope 'orders:read'\n",
			shellQuote(*keyFile), shellQuote(srv.Issuer), *alg)
	}

	previous := key.KID
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			return exitOK
		case <-hup:
		case <-tick:
		}
		next, err := newDevKey(*alg)
		if err == nil && *keyFile != "" {
			err = saveDevKey(*keyFile, next)
		}
		if err != nil {
			log.Error("key rotation failed", "error", err)
			continue
		}
		srv.AddKey(next, true)
		srv.SetSigningKey(next.KID)
		// Tokens signed by the previous key keep verifying until they expire; the
		// one before it has had a full rotation interval to age out.
		var unpublished []string
		for _, old := range srv.Published() {
			if old != next.KID && old != previous {
				srv.Publish(old, false)
				unpublished = append(unpublished, old)
			}
		}
		log.Info("signing key rotated", "kid", next.KID, "previous", previous, "unpublished", strings.Join(unpublished, ","))
		previous = next.KID
	}
}
