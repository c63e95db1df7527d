// Command tokengate is the one binary of tokengate: it guards an API that accepts OAuth
// 2.0 access tokens, and carries the tools around it.
//
// # Commands
//
//	tokengate sidecar --config FILE   the reverse proxy in front of an API (the main job)
//	tokengate demo                    tokengate end to end on loopback, with curl lines to try
//	tokengate check --config FILE     explains the decision for one token and request
//	tokengate issuer                  a development authorization server (never for production)
//	tokengate version                 the version, commit and Go version
//
// "tokengate help" lists them, and "tokengate <command> -h" shows a command's flags. The
// inject command of the design joins the table when it is built.
//
// # Flags and environment
//
// Flags follow the Go flag package (-flag or --flag). Every flag can also be set with an
// environment variable named TOKENGATE_ and the flag name in upper case with '-' as '_'
// (--rotate-every is TOKENGATE_ROTATE_EVERY); a flag on the command line wins. A bad
// value in the environment is a usage error that names the variable.
//
// # Exit codes
//
// 0: success. 1: the command failed (for check: the token was denied). 2: a usage or
// configuration error, with a message that names the flag, variable or key.
//
// # tokengate issuer
//
// Serves OpenID Connect and RFC 8414 discovery, a JWKS, and a token endpoint for the
// client_credentials grant (client_secret_basic or client_secret_post; scope; the
// resource or audience parameter picks aud) on a loopback --listen address
// (127.0.0.1:8081; port 0 picks a free one). It prints the issuer, JWKS and token URLs
// and a curl command that gets a token; the first line is always "issuer: <URL>", for
// scripts:
//
//	$ tokengate issuer --client c1:s1:orders:read --listen 127.0.0.1:0
//	issuer: http://127.0.0.1:41327
//	...
//
// SIGHUP, and every --rotate-every, rotates the signing key: the previous key stays
// published so that the tokens it signed keep verifying until they expire, and the one
// before it is withdrawn. SIGINT and SIGTERM stop it with exit code 0. Its keys live in
// memory and anyone who can reach it gets tokens: it is for development only.
package main
