package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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
	*c = append(*c, cl)
	return nil
}

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
			if s = strings.TrimSpace(s); s != "" {
				if strings.ContainsAny(s, " \"\\") {
					return jwkstest.Client{}, fmt.Errorf("scope %q has a space, quote or backslash (RFC 6749 §3.3)", s)
				}
				cl.Scopes = append(cl.Scopes, s)
			}
		}
	}
	return cl, nil
}

func redactSecret(v string) string {
	parts := strings.SplitN(v, ":", 3)
	if len(parts) >= 2 {
		parts[1] = "***"
	}
	return strings.Join(parts, ":")
}

func runIssuer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("issuer", "A development OAuth 2.0 authorization server: discovery, a JWKS, a token endpoint for\nthe client_credentials grant, key rotation (every --rotate-every, and on SIGHUP).\nNever for production: anyone who can reach it gets tokens, and its keys live in memory.", stderr)
	listen := fs.String("listen", "127.0.0.1:8081", "address to serve on (host:port; port 0 picks a free one)")
	audience := fs.String("audience", jwkstest.DefaultAudience, "aud of tokens whose request names no resource")
	ttl := fs.Duration("token-ttl", 5*time.Minute, "lifetime of issued tokens")
	alg := fs.String("alg", "RS256", "signing algorithm of generated keys (RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA)")
	rotateEvery := fs.Duration("rotate-every", 0, "rotate the signing key on this interval (0: only on SIGHUP)")
	var clients clientFlag
	fs.Var(&clients, "client", "a client id:secret:scope1,scope2 (repeatable; default demo-client:demo-secret:orders:read,orders:write)")
	if code, exit := parseOrExit(fs, args, stderr); exit {
		return code
	}
	if *ttl <= 0 || *rotateEvery < 0 {
		fmt.Fprintln(stderr, "tokengate issuer: --token-ttl must be positive and --rotate-every not negative")
		return exitUsage
	}
	if len(clients) == 0 {
		clients = clientFlag{{ID: "demo-client", Secret: "demo-secret", Scopes: []string{"orders:read", "orders:write"}}}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	key, err := jwkstest.GenerateKey(strings.ToLower(*alg)+"-1", *alg)
	if err != nil {
		fmt.Fprintf(stderr, "tokengate issuer: --alg: %v\n", err)
		return exitUsage
	}
	srv, err := jwkstest.NewServer(jwkstest.WithListen(*listen), jwkstest.WithKeys(key), jwkstest.WithAudience(*audience))
	if err != nil {
		fmt.Fprintf(stderr, "tokengate issuer: --listen %s: %v\n", *listen, err)
		return exitFail
	}
	defer srv.Close()
	srv.SetTokenTTL(*ttl)
	for _, c := range clients {
		srv.AddClient(c)
	}

	fmt.Fprint(stderr, `
  !!  tokengate issuer is a DEVELOPMENT authorization server.
  !!  Anyone who can reach it gets tokens, and its keys live in memory only.
  !!  Never use it in production.

`)
	first := clients[0]
	fmt.Fprintf(stdout, "issuer: %s\njwks: %s\ntoken: %s\n\nGet a token for %s:\n  curl -s -u %s:%s -d grant_type=client_credentials -d scope=%q %s\n",
		srv.Issuer, srv.JWKSURI(), srv.TokenURL(), first.ID, first.ID, first.Secret, strings.Join(first.Scopes, " "), srv.TokenURL())

	// SIGHUP rotates at once; the channel is ours and stops with the command.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if *rotateEvery > 0 {
		t := time.NewTicker(*rotateEvery)
		defer t.Stop()
		tick = t.C
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
		next, err := srv.Rotate()
		if err != nil {
			log.Error("key rotation failed", "error", err)
			continue
		}
		// Tokens signed by the previous key keep verifying until they expire; the
		// one before that has had a full rotation interval to age out.
		for _, old := range srv.Published() {
			if old != next.KID && old != previous {
				srv.Publish(old, false)
			}
		}
		log.Info("signing key rotated", "kid", next.KID, "previous", previous)
		previous = next.KID
	}
}
