// Command tokengate is the one binary of tokengate: it guards an API that accepts OAuth
// 2.0 access tokens, and carries the tools around it.
//
// # Commands
//
//	tokengate issuer    a development authorization server (never for production)
//	tokengate version   the version, commit and Go version
//
// The sidecar, demo, check and inject commands of the design join this table as they
// are built.
//
// # Flags and environment
//
// Flags follow the Go flag package (-flag or --flag). Every flag can also be set with an
// environment variable named TOKENGATE_ and the flag name in upper case with '-' as '_'
// (--rotate-every is TOKENGATE_ROTATE_EVERY); a flag on the command line wins.
//
// # Exit codes
//
// 0: success. 1: the command failed. 2: a usage or configuration error, with a message
// that names the flag or variable.
//
// # tokengate issuer
//
// Serves OpenID Connect and RFC 8414 discovery, a JWKS, and a token endpoint for the
// client_credentials grant (client_secret_basic or client_secret_post; scope; the
// resource or audience parameter picks aud) on --listen (127.0.0.1:8081). The first line
// it prints is "issuer: <URL>". SIGHUP, and every --rotate-every, rotates the signing
// key; the previous key stays published so its tokens keep verifying until they expire.
package main
