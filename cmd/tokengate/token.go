package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tokengate/tokengate/dpop/dpoptest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// claimFlag collects repeated --claim name=value flags; a value that is JSON (a number,
// an array, an object, true, a quoted string) is that JSON, anything else a string.
type claimFlag map[string]any

func (c claimFlag) String() string {
	var parts []string
	for k := range c {
		parts = append(parts, k)
	}
	return strings.Join(parts, ",")
}

func (c claimFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	var parsed any
	if err := json.Unmarshal([]byte(value), &parsed); err == nil {
		c[name] = parsed
	} else {
		c[name] = value
	}
	return nil
}

// defaultIssuerURL is where `tokengate issuer` listens by default.
const defaultIssuerURL = "http://127.0.0.1:8081"

func runToken(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("token", "Mints a development access token with the development issuer's key (the file that\n'tokengate issuer --key-file' keeps), for trying a policy: any subject, audience, scopes\nand lifetime, or an already expired token, without waiting. Prints the token alone, so\nthat TOKEN=$(tokengate token ...) works. Never for production.", stderr)
	keyFile := fs.String("key-file", "", "the issuer's key file (required): run 'tokengate issuer --key-file FILE' first")
	issuer := fs.String("issuer", defaultIssuerURL, "iss: the issuer URL 'tokengate issuer' printed")
	alg := fs.String("alg", "RS256", "the algorithm the issuer was started with (its --alg)")
	audience := fs.String("aud", jwkstest.DefaultAudience, "aud")
	subject := fs.String("sub", "user-1", "sub")
	clientID := fs.String("client-id", "dev-client", "client_id")
	scope := fs.String("scope", "", "scope: scopes separated by spaces or commas")
	lifetime := fs.Duration("lifetime", 5*time.Minute, "exp − iat")
	expired := fs.Bool("expired", false, "mint a token that expired a minute past the usual 30 s leeway")
	typ := fs.String("typ", "at+jwt", "the header's typ (JWT, to try an issuer set to tokenType: at+jwt)")
	dpopKey := fs.String("dpop-key", "", "bind the token to this client key (cnf.jkt, RFC 9449): an ES256 key file, made when missing; 'tokengate proof --dpop-key' signs its proofs")
	claims := claimFlag{}
	fs.Var(claims, "claim", "another claim, name=value; a JSON value (3, true, [\"a\",\"b\"], {\"x\":1}) is kept as JSON (repeatable)")
	if code, exit := parseOrExit(fs, args, stderr); exit {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "tokengate token: "+format+"\n", a...)
		return exitUsage
	}
	if *keyFile == "" {
		return usageErr("%s is required: start 'tokengate issuer --key-file FILE' and pass the same FILE", fs.ref("key-file"))
	}
	if *lifetime <= 0 {
		return usageErr("%s %s: must be positive", fs.ref("lifetime"), *lifetime)
	}
	key, err := loadDevKey(*keyFile, *alg)
	if errors.Is(err, os.ErrNotExist) {
		return usageErr("%s %s does not exist: 'tokengate issuer --key-file %s' writes it; a key of its own would sign tokens no issuer publishes", fs.ref("key-file"), *keyFile, *keyFile)
	}
	if err != nil {
		return usageErr("%s: %v", fs.ref("key-file"), err)
	}
	var scopes []string
	for _, s := range strings.FieldsFunc(*scope, func(r rune) bool { return r == ' ' || r == ',' }) {
		if !validScope(s) {
			return usageErr("%s: %q is not a scope (RFC 6749 §3.3: printable ASCII without space, '\"' or '\\')", fs.ref("scope"), s)
		}
		scopes = append(scopes, s)
	}

	now := time.Now()
	iat, exp := now, now.Add(*lifetime)
	if *expired {
		exp = now.Add(-90 * time.Second)
		iat = exp.Add(-*lifetime)
	}
	payload := map[string]any{
		"iss": *issuer, "aud": *audience, "sub": *subject, "client_id": *clientID,
		"iat": iat.Unix(), "exp": exp.Unix(), "jti": randomJTI(),
	}
	if len(scopes) > 0 {
		payload["scope"] = strings.Join(scopes, " ")
	}
	if *dpopKey != "" {
		client, _, err := dpopClient(*dpopKey)
		if err != nil {
			return usageErr("%s: %v", fs.ref("dpop-key"), err)
		}
		payload["cnf"] = map[string]any{"jkt": client.JKT()}
	}
	for k, v := range claims {
		payload[k] = v
	}
	header := map[string]any{"alg": *alg, "kid": key.KID, "typ": *typ}
	tok, err := jwkstest.SignJSON(key, *alg, header, payload)
	if err != nil {
		fmt.Fprintf(stderr, "tokengate token: %v\n", err)
		return exitFail
	}
	fmt.Fprintln(stdout, tok)
	return exitOK
}

// dpopClient is the DPoP client of an ES256 key file, which it makes when missing.
func dpopClient(path string) (*dpoptest.Client, bool, error) {
	k, created, err := loadOrCreateDevKey(path, "ES256")
	if err != nil {
		return nil, false, err
	}
	c, err := dpoptest.ClientOf(k)
	return c, created, err
}

func runProof(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("proof", "Signs a DPoP proof (RFC 9449) with a development client key, for one request: the\nkey 'tokengate token --dpop-key' bound a token to. Prints the proof alone, so that\ncurl -H \"Authorization: DPoP $TOKEN\" -H \"DPoP: $(tokengate proof ...)\" works. A proof is\ngood once, for one method and URL. Never for production.", stderr)
	keyFile := fs.String("dpop-key", "", "the client key file (required; made when missing, as by 'tokengate token --dpop-key')")
	method := fs.String("method", "GET", "htm: the request's method")
	target := fs.String("url", "", "htu: the URL the request is sent to, as the sidecar's externalURL plus the path (required)")
	token := fs.String("token", "", "the access token the proof goes with (ath); empty: none")
	nonce := fs.String("nonce", "", "the server nonce of a DPoP-Nonce header, when the sidecar asks for one")
	if code, exit := parseOrExit(fs, args, stderr); exit {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "tokengate proof: "+format+"\n", a...)
		return exitUsage
	}
	switch {
	case *keyFile == "":
		return usageErr("%s is required: the key file 'tokengate token --dpop-key' used", fs.ref("dpop-key"))
	case *target == "":
		return usageErr("%s is required: the URL of the request, such as https://orders.example.com/orders/1", fs.ref("url"))
	}
	if u, err := url.Parse(*target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErr("%s %q is not an http(s) URL", fs.ref("url"), *target)
	}
	client, created, err := dpopClient(*keyFile)
	if err != nil {
		return usageErr("%s: %v", fs.ref("dpop-key"), err)
	}
	if created {
		fmt.Fprintf(stderr, "tokengate proof: made a new key in %s; mint a token bound to it with 'tokengate token --dpop-key %s'\n", *keyFile, *keyFile)
	}
	claims := dpoptest.Claims{}
	if *nonce != "" {
		claims["nonce"] = *nonce
	}
	proof, err := client.Proof(strings.ToUpper(*method), *target, *token, claims, nil)
	if err != nil {
		fmt.Fprintf(stderr, "tokengate proof: %v\n", err)
		return exitFail
	}
	fmt.Fprintln(stdout, proof)
	return exitOK
}

// randomJTI is a fresh jti, so that each minted token is a token of its own.
func randomJTI() string { return rand.Text() }
