package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
)

// Exit codes shared by every command.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed (or, for check, denied)
	exitUsage = 2 // bad flags, environment or configuration
)

// command is one subcommand of the binary.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands is the table of subcommands, in the order the usage lists them.
var commands = []command{
	{"sidecar", "the reverse proxy in front of an API: forwards only authorized requests (the main job)", runSidecar},
	{"authz", "the decision service for gateways: nginx auth_request, Traefik forwardAuth, Envoy/Istio ext_authz", runAuthz},
	{"demo", "run tokengate end to end on loopback and show an allowed, an expired, a wrong-scope and a missing token", runDemo},
	{"check", "explain the decision for one token and request with a configuration file (exit 0 allowed, 1 denied)", runCheck},
	{"inject", "the Kubernetes admission webhook that adds the sidecar to labelled pods", runInject},
	{"issuer", "a development authorization server: discovery, JWKS, client_credentials tokens, key rotation (never for production)", runIssuer},
	{"token", "mint a development token with the development issuer's key: any subject, audience, scopes, lifetime, expired, or DPoP-bound", runToken},
	{"proof", "sign a DPoP proof for one request with a development client key (the one a DPoP-bound token is bound to)", runProof},
	{"version", "print the version, commit and Go version", runVersion},
}

func main() {
	// Kubernetes stops a pod with SIGTERM; a terminal with SIGINT. Both cancel ctx.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and returns the process's exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "tokengate: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, "tokengate guards an API that accepts OAuth 2.0 access tokens.\n\nUsage:\n  tokengate <command> [flags]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	_ = tw.Flush()
	fmt.Fprint(w, "\nRun 'tokengate <command> -h' for a command's flags. Every flag can also be set\nwith an environment variable TOKENGATE_<FLAG> (upper case, '-' as '_').\n")
}
