package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/policy"
)

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", "Explains what tokengate decides for one token and request, with the configuration\nfile: the decision, the reason, and the claims, in words. The token is the argument,\nor read from standard input. Exit 0 when allowed, 1 when denied, 2 on a usage or\nconfiguration error.\n\n  tokengate check --config tokengate.yaml --method GET --path /orders/42 eyJ...", stderr)
	config := fs.String("config", "", "the configuration file (required)")
	method := fs.String("method", "GET", "the request's method")
	path := fs.String("path", "/", "the request's path (and query)")
	host := fs.String("host", "", "the request's Host, for routes with a host")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the issuers' keys")
	var headers headerFlag
	fs.Var(&headers, "header", "a request header \"Name: value\", for rules that read request.headers (repeatable)")
	if code, exit := parseOrExitArgs(fs, args, stderr, 1); exit {
		return code
	}
	if *config == "" {
		fmt.Fprintln(stderr, "tokengate check: --config (or $TOKENGATE_CONFIG) is required")
		return exitUsage
	}
	if !strings.HasPrefix(*path, "/") {
		fmt.Fprintf(stderr, "tokengate check: --path %q must start with /\n", *path)
		return exitUsage
	}
	token := fs.Arg(0)
	if fs.NArg() == 0 {
		line, err := bufio.NewReader(io.LimitReader(stdinReader, 64<<10)).ReadString('\n')
		if err != nil && err != io.EOF {
			fmt.Fprintf(stderr, "tokengate check: reading the token: %v\n", err)
			return exitUsage
		}
		token = line
	}
	token = strings.TrimSpace(token)
	if t, ok := cutFold(token, "Bearer "); ok {
		token = strings.TrimSpace(t)
	}

	loaded, err := policy.LoadFile(*config, policy.ForCheck, policy.Overrides{})
	if err != nil {
		fmt.Fprintf(stderr, "tokengate check: the configuration is not valid:\n%s\n", indent(err.Error()))
		return exitUsage
	}
	quiet := slog.New(slog.DiscardHandler)
	gate, err := middleware.New(ctx, loaded.Gate, middleware.Options{Logger: quiet})
	if err != nil {
		fmt.Fprintf(stderr, "tokengate check: %v\n", err)
		return exitUsage
	}
	defer gate.Close()
	for _, p := range keyProblems(ctx, gate, *wait) {
		fmt.Fprintf(stdout, "keys:     %s\n", p)
	}

	req := httptest.NewRequest(*method, *path, nil)
	if *host != "" {
		req.Host = *host
	}
	for _, h := range headers {
		req.Header.Add(h[0], h[1])
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	d := gate.Decide(req)
	explain(stdout, loaded, gate, d, token, time.Now())
	if d.Allowed() {
		return exitOK
	}
	return exitFail
}

// stdinReader is standard input; tests replace it.
var stdinReader io.Reader = os.Stdin

func cutFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// explain prints a decision in words a person can act on. It never prints the token.
func explain(w io.Writer, l *policy.Loaded, gate *middleware.Gate, d middleware.Decision, token string, now time.Time) {
	outcome := d.Outcome.String()
	if d.Outcome == middleware.DecisionShadowDenied {
		outcome = "denied (shadow mode would forward it anyway)"
	}
	fmt.Fprintf(w, "decision: %s\nreason:   %s\n", outcome, d.Reason)
	route := d.Route
	if r := findRoute(l, d.Route); r != nil {
		route += " (" + routeNeeds(*r) + ")"
	}
	fmt.Fprintf(w, "route:    %s\n", route)

	hdr, claims := peek(token)
	verified := d.Claims != nil
	why := ""
	switch d.Reason {
	case middleware.ReasonOK:
		why = "the token is valid and carries what the route needs"
		if d.Public {
			why = "the route is public: no token is needed"
		}
	case middleware.ReasonMissingToken:
		why = "no token was given"
	case middleware.ReasonNoRoute:
		why = "no route of the configuration matches this method and path, so the request is denied (fail closed)"
		var e *middleware.Error
		if errors.As(d.Err, &e) && e.Err != nil {
			why = e.Err.Error()
		}
	case middleware.ReasonExpired:
		if exp, ok := timeClaim(claims, "exp"); ok {
			why = fmt.Sprintf("the token expired %s ago (exp %s, leeway %s); the client should use its refresh token", ago(now.Sub(exp)), exp.UTC().Format(time.RFC3339), leeway(l))
		}
	case middleware.ReasonNotYetValid:
		for _, c := range []string{"nbf", "iat"} {
			if t, ok := timeClaim(claims, c); ok && t.After(now) {
				why = fmt.Sprintf("%s is %s from now (%s): the token is not valid yet, or a clock is wrong", c, ago(t.Sub(now)), t.UTC().Format(time.RFC3339))
			}
		}
	case middleware.ReasonAudience:
		why = fmt.Sprintf("the token is for %s; this API accepts %s", jsonText(claims["aud"]), audiences(l, stringClaim(claims, "iss")))
		for _, iss := range l.Gate.Issuers {
			if iss.Issuer == stringClaim(claims, "iss") && len(iss.AudienceClaims) > 0 {
				var have []string
				for _, c := range iss.AudienceClaims {
					have = append(have, c+" "+jsonText(claims[c]))
				}
				why = fmt.Sprintf("the issuer's tokens carry the audience in %s; the token has %s; this API accepts %s",
					strings.Join(iss.AudienceClaims, " or "), strings.Join(have, ", "), audiences(l, iss.Issuer))
			}
		}
	case middleware.ReasonIssuer:
		var known []string
		for _, iss := range l.Gate.Issuers {
			known = append(known, iss.Issuer)
		}
		why = fmt.Sprintf("the token's issuer %s is not configured (configured: %s)", jsonText(claims["iss"]), strings.Join(known, ", "))
	case middleware.ReasonInsufficientScope:
		have := "no scopes"
		if d.Claims != nil && len(d.Claims.Scopes) > 0 {
			have = strings.Join(d.Claims.Scopes, " ")
		}
		if r := findRoute(l, d.Route); r != nil {
			why = fmt.Sprintf("route %s %s; the token has %s", d.Route, routeNeeds(*r), have)
			if style := l.Gate.PathStyle; style != middleware.PathsExact {
				why += fmt.Sprintf(" (every route that the path matches as the upstream may read it counts: upstreamPaths %s)", cmp.Or(style, middleware.PathsStrict))
			}
		}
	case middleware.ReasonUnknownKey:
		why = fmt.Sprintf("no key with kid %s in the key set of %s", jsonText(hdr["kid"]), jsonText(claims["iss"]))
		if set, ok := gate.KeySets().Set(stringClaim(claims, "iss")); ok {
			why += fmt.Sprintf(" (it has: %s)", strings.Join(set.KeyIDs(), ", "))
		}
	case middleware.ReasonSignature:
		why = fmt.Sprintf("the signature does not verify with key %s of %s: the token was altered, or signed by another key", jsonText(hdr["kid"]), jsonText(claims["iss"]))
	case middleware.ReasonRule:
		why = explainRule(l, d)
	case middleware.ReasonKeysUnavailable:
		if set, ok := gate.KeySets().Set(stringClaim(claims, "iss")); ok {
			why = fmt.Sprintf("the keys of %s could not be loaded: %v", set.Issuer(), set.Status().LastError)
		}
	}
	if why == "" && d.Err != nil {
		why = d.Err.Error()
		var e *middleware.Error
		if errors.As(d.Err, &e) && e.Err != nil {
			why = e.Err.Error()
		}
	}
	if why != "" {
		fmt.Fprintf(w, "why:      %s\n", why)
	}
	if claims == nil {
		return
	}
	label := "claims (NOT verified: the decision came before the signature check):"
	if verified {
		label = "claims (verified):"
	}
	fmt.Fprintln(w, label)
	names := make([]string, 0, len(claims))
	for k := range claims {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := jsonText(claims[k])
		if t, ok := timeClaim(claims, k); ok && (k == "exp" || k == "iat" || k == "nbf") {
			rel := "from now"
			if t.Before(now) {
				rel = "ago"
			}
			v = fmt.Sprintf("%s (%s, %s %s)", v, t.UTC().Format(time.RFC3339), ago(absDuration(now.Sub(t))), rel)
		}
		fmt.Fprintf(w, "  %-10s %s\n", k, v)
	}
	if alg, kid := jsonText(hdr["alg"]), jsonText(hdr["kid"]); alg != "" {
		fmt.Fprintf(w, "header:   alg %s, kid %s, typ %s\n", alg, kid, jsonText(hdr["typ"]))
	}
}

// peek decodes the header and payload of a token without verifying anything, to show
// them.
func peek(token string) (hdr, claims map[string]json.RawMessage) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil
	}
	decode := func(s string) map[string]json.RawMessage {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			return nil
		}
		return m
	}
	return decode(parts[0]), decode(parts[1])
}

func jsonText(raw json.RawMessage) string {
	if raw == nil {
		return "(no such claim)"
	}
	s := string(raw)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func stringClaim(claims map[string]json.RawMessage, name string) string {
	var s string
	_ = json.Unmarshal(claims[name], &s)
	return s
}

func timeClaim(claims map[string]json.RawMessage, name string) (time.Time, bool) {
	var f float64
	if json.Unmarshal(claims[name], &f) != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

func ago(d time.Duration) string { return d.Round(time.Second).String() }

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func leeway(l *policy.Loaded) time.Duration {
	if l.File.Tokens.Leeway != nil {
		return *l.File.Tokens.Leeway
	}
	return middleware.DefaultLeeway
}

func audiences(l *policy.Loaded, issuer string) string {
	for _, iss := range l.Gate.Issuers {
		if iss.Issuer == issuer {
			return "[" + strings.Join(iss.Audiences, " ") + "]"
		}
	}
	var all []string
	for _, iss := range l.Gate.Issuers {
		all = append(all, iss.Audiences...)
	}
	return "[" + strings.Join(all, " ") + "]"
}

func findRoute(l *policy.Loaded, pattern string) *middleware.Route {
	for i, r := range l.Gate.Routes {
		if strings.Join(strings.Fields(r.Match), " ") == pattern {
			return &l.Gate.Routes[i]
		}
	}
	return nil
}

func routeNeeds(r middleware.Route) string {
	switch {
	case r.Public:
		return "public"
	case len(r.Scopes) == 0 && len(r.AnyScopes) == 0:
		return "any valid token"
	}
	var parts []string
	if len(r.Scopes) > 0 {
		parts = append(parts, strings.Join(r.Scopes, " and "))
	}
	if len(r.AnyScopes) > 0 {
		parts = append(parts, "one of "+strings.Join(r.AnyScopes, ", "))
	}
	return "needs " + strings.Join(parts, ", and ")
}

// headerFlag collects --header "Name: value" flags.
type headerFlag [][2]string

func (h *headerFlag) String() string { return "" }

func (h *headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("%q is not \"Name: value\"", v)
	}
	*h = append(*h, [2]string{name, strings.TrimSpace(value)})
	return nil
}

// explainRule says which rule denied the request, where the file has it, its
// expression, and whether it was false or could not be evaluated (and why).
func explainRule(l *policy.Loaded, d middleware.Decision) string {
	var e *middleware.Error
	if !errors.As(d.Err, &e) {
		return ""
	}
	where, expr := "", ""
	find := func(key string, list []policy.Rule) {
		for j, r := range list {
			if where == "" && r.Name == e.Rule {
				where, expr = fmt.Sprintf("%s[%d]", key, j), r.Expr
			}
		}
	}
	for i, r := range l.File.Routes {
		if strings.Join(strings.Fields(r.Match), " ") == d.Route {
			find(fmt.Sprintf("routes[%d].rules", i), r.Rules)
		}
	}
	if d.Claims != nil {
		for i, iss := range l.File.Issuers {
			if iss.Issuer == d.Claims.Issuer {
				find(fmt.Sprintf("issuers[%d].rules", i), iss.Rules)
			}
		}
	}
	verdict := "is false"
	if !errors.Is(e.Err, middleware.ErrRuleIsFalse) {
		cause := e.Err
		if inner := errors.Unwrap(e.Err); inner != nil {
			cause = inner // the evaluation's own error, without the rule's name again
		}
		verdict = fmt.Sprintf("could not be evaluated, which denies (fail closed): %v", cause)
	}
	if where == "" {
		return fmt.Sprintf("rule %q %s", e.Rule, verdict)
	}
	return fmt.Sprintf("rule %q (%s) %s: %s", e.Rule, where, verdict, expr)
}
