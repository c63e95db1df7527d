package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tokengate/tokengate/internal/joined"
	"github.com/tokengate/tokengate/internal/schemerule"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/serviceaccount"
)

// Issuers of kind kubernetes (docs/kubernetes.md, "Service-to-service"): where their
// keys come from, the workload check every token of theirs passes, the routes' allow
// lists of ServiceAccounts, and the headers of a workload's identity.

// kubeHeaders are forward.kubernetes resolved: the canonical names of the headers of
// a workload's identity ("" for none), set for tokens of the issuers of kind
// kubernetes.
type kubeHeaders struct {
	issuers        map[string]bool
	namespace      string
	serviceAccount string
}

// set writes the headers of a workload's identity when c is the token of a
// Kubernetes issuer, whose check made sure that sub names a ServiceAccount.
func (k *kubeHeaders) set(h http.Header, c *middleware.Claims) {
	if !k.issuers[c.Issuer] {
		return
	}
	id, err := serviceaccount.Parse(c.Subject)
	if err != nil {
		return
	}
	if k.namespace != "" {
		h[k.namespace] = []string{id.Namespace}
	}
	if k.serviceAccount != "" {
		h[k.serviceAccount] = []string{id.Name}
	}
}

// defaultKubernetes gives an issuer whose kubernetes key has no value (`kubernetes:`
// alone, which YAML reads as null, and so as no block at all) the block of the
// defaults, as the documentation says: a key written to turn a cluster on must not
// silently leave it off. It reads the file's nodes, aliases followed.
func defaultKubernetes(doc *yaml.Node, c *Config) {
	issuers := member(doc, "issuers")
	if issuers == nil || issuers.Kind != yaml.SequenceNode {
		return
	}
	for i, item := range issuers.Content {
		if i < len(c.Issuers) && c.Issuers[i].Kubernetes == nil && member(item, "kubernetes") != nil {
			c.Issuers[i].Kubernetes = &Kubernetes{}
		}
	}
}

// member returns the value of key in the mapping n, aliases followed; nil when n is
// not a mapping or has no such key. (Merge keys, <<, need not be followed: the
// loader refuses them as unknown keys.)
func member(n *yaml.Node, key string) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v := n.Content[i+1]
			for v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			return v
		}
	}
	return nil
}

// resolveKubernetes resolves the issuers of kind kubernetes into gc (keys, workload
// check, the kubernetes.io claim kept in the cache) and forward.kubernetes into l,
// checking its headers as forward.claims' (seen: the headers taken, normalized). It
// returns the issuers of kind kubernetes, and the Go paths of the fields that hold
// their keys' settings with the file keys to report them under.
func (c Config) resolveKubernetes(l *Loaded, gc *middleware.Config, seen map[string]string) (issuers []string, keys map[string]string, errs []error) {
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	keys = map[string]string{}
	for i, iss := range c.Issuers {
		k := iss.Kubernetes
		if k == nil {
			continue
		}
		issuers = append(issuers, iss.Issuer)
		at := fmt.Sprintf("issuers[%d]", i)
		gi := &gc.Issuers[i]
		gi.Checks = append(gi.Checks, serviceaccount.RequireWorkload())
		if iss.JWKSURI != "" {
			bad(at+".jwksURI", "an issuer with kubernetes takes its keys from kubernetes.source (inCluster: the API server's %s, whatever host discovery names; public: the issuer's discovery), jwksFile or jwks: remove jwksURI", KubernetesJWKSPath)
		}
		static := iss.JWKSFile != "" || iss.JWKS != ""
		source := k.Source
		switch {
		case source == "" && !static:
			source = SourceInCluster
		case source != "" && static:
			from := "jwks"
			if iss.JWKSFile != "" {
				from = "jwksFile"
			}
			bad(at+".kubernetes.source", "%q: the keys come from %s; remove one or the other", source, from)
			source = ""
		}
		switch source {
		case SourceInCluster:
			if iss.CAFile != "" {
				bad(at+".caFile", "with kubernetes.source inCluster the API server's CA is kubernetes.caFile [%s]: move it there", DefaultCAFile)
			}
			api, err := apiServerURL(cmp.Or(k.APIServer, DefaultAPIServer))
			if err != nil {
				bad(at+".kubernetes.apiServer", "%v", err)
				break
			}
			gi.JWKSURI = api + KubernetesJWKSPath
			gi.IssuerCheckURL = api + KubernetesDiscoveryPath
			gi.CAFile = cmp.Or(k.CAFile, DefaultCAFile)
			gi.BearerTokenFile = cmp.Or(k.TokenFile, DefaultTokenFile)
			keys[fmt.Sprintf("Issuers[%d].CAFile", i)] = at + ".kubernetes.caFile"
			keys[fmt.Sprintf("Issuers[%d].JWKSURI", i)] = at + ".kubernetes.apiServer"
		case SourcePublic, "":
			for name, v := range map[string]string{"apiServer": k.APIServer, "tokenFile": k.TokenFile, "caFile": k.CAFile} {
				if v != "" {
					bad(at+".kubernetes."+name, "is read only with kubernetes.source: inCluster")
				}
			}
		default:
			bad(at+".kubernetes.source", "%q: use inCluster (the API server, with the pod's token) or public (the issuer's public discovery)", k.Source)
		}
		// What a pod's default token is for: the API server's audiences (the issuer,
		// unless --api-audiences says otherwise) and the names it is reached by.
		apiAudiences := []string{iss.Issuer, "https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local", cmp.Or(k.APIServer, DefaultAPIServer)}
		for j, a := range iss.Audiences {
			if slices.ContainsFunc(apiAudiences, func(api string) bool { return strings.TrimSuffix(api, "/") == strings.TrimSuffix(a, "/") }) {
				bad(fmt.Sprintf("%s.audiences[%d]", at, j), "%q is the API server's own audience: every pod's default token would be accepted, and the API would receive tokens that work at the API server with their pods' permissions; use this API's own name (its Service's, such as orders), which callers request for their projected token", a)
			}
		}
	}

	fk := c.Forward.Kubernetes
	if len(issuers) == 0 {
		if fk.Namespace != nil || fk.ServiceAccount != nil {
			bad("forward.kubernetes", "is set, but no issuer has kubernetes: only a Kubernetes cluster's tokens name a workload")
		}
		return nil, keys, errs
	}
	kh := &kubeHeaders{issuers: map[string]bool{}}
	for _, iss := range issuers {
		kh.issuers[iss] = true
	}
	ns, sa := DefaultNamespaceHeader, DefaultServiceAccountHeader
	for _, h := range []struct {
		key  string
		set  *string
		name *string
		into *string
	}{
		{"forward.kubernetes.namespace", fk.Namespace, &ns, &kh.namespace},
		{"forward.kubernetes.serviceAccount", fk.ServiceAccount, &sa, &kh.serviceAccount},
	} {
		if h.set != nil {
			*h.name = *h.set
		}
		name := *h.name
		n := normalize(name)
		switch {
		case name == "":
			continue
		case !validHeaderName(name):
			bad(h.key, "%q is not a header name (\"\" sends none)", name)
		case reservedHeader(name):
			bad(h.key, "%q is a header the proxy manages; use an X-... name", name)
		case seen[n] != "":
			bad(h.key, "header %q is also used for %s", name, seen[n])
		default:
			seen[n] = h.key
			*h.into = http.CanonicalHeaderKey(name)
		}
	}
	l.Forward.Kubernetes = KubernetesHeaders{Namespace: &ns, ServiceAccount: &sa}
	l.kube = kh

	// The cache keeps the kubernetes.io claim, so that what reads a cached token's
	// claims (serviceaccount.KubernetesClaim in a Go service's handler) finds it.
	if gc.Tokens.KeepClaims != nil && !slices.Contains(gc.Tokens.KeepClaims, serviceaccount.ClaimName) {
		gc.Tokens.KeepClaims = slices.Sorted(slices.Values(append(gc.Tokens.KeepClaims, serviceaccount.ClaimName)))
	}
	return issuers, keys, errs
}

// apiServerURL checks the API server's URL and returns it without a trailing slash.
// The pod's token goes to it: https, or plain http to a loopback host only.
func apiServerURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		return "", fmt.Errorf("%q is not an absolute URL with a host, such as %s", raw, DefaultAPIServer)
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("%q has credentials, a query or a fragment: name the API server only", raw)
	case schemerule.Check(raw, u, false) != nil:
		return "", fmt.Errorf("%q: the pod's token goes to it, so it must be https (plain http only to a loopback host)", raw)
	}
	return strings.TrimSuffix(raw, "/"), nil
}

// resolveServiceAccounts compiles routes[].serviceAccounts into a rule that leads each
// route's rules: a token of an issuer with kubernetes whose ServiceAccount is listed.
func (c Config) resolveServiceAccounts(gc *middleware.Config, issuers []string) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	for i, r := range c.Routes {
		if r.ServiceAccounts == nil {
			continue
		}
		key := fmt.Sprintf("routes[%d].serviceAccounts", i)
		switch {
		case r.Public:
			bad(key, "a public route needs no token, so there is no ServiceAccount to check")
			continue
		case len(issuers) == 0:
			bad(key, "no issuer has kubernetes: only a Kubernetes cluster's tokens name a ServiceAccount it vouches for")
			continue
		}
		allow, err := serviceaccount.ParseAllow(r.ServiceAccounts)
		for _, e := range joined.Flatten(err) {
			var ee *serviceaccount.EntryError
			switch {
			case errors.As(e, &ee):
				bad(fmt.Sprintf("%s[%d]", key, ee.Index), "%s: %s (write namespace/name or namespace/*)", strconv.Quote(ee.Entry), strings.TrimPrefix(ee.Err.Error(), serviceaccount.ErrInvalidEntry.Error()+": "))
			case errors.Is(e, serviceaccount.ErrEmptyAllowList):
				bad(key, "is empty, which would refuse every token: list the ServiceAccounts, or remove the key to take any")
			default:
				bad(key, "%v", e)
			}
		}
		if allow != nil {
			gc.Routes[i].Rules = append([]middleware.Rule{allow.Rule(ServiceAccountsRule, issuers...)}, gc.Routes[i].Rules...)
		}
	}
	return errs
}

// ServiceAccountsRule names the rule of routes[].serviceAccounts in log lines and in
// tokengate check.
const ServiceAccountsRule = "serviceAccounts"

// kubeProblems reports the problems of the middleware's validation that are about
// the keys of an issuer with kubernetes under the keys the file has for them (keys,
// from resolveKubernetes: its caFile is kubernetes.caFile, its JWKS URL
// kubernetes.apiServer), and the others as they are.
func kubeProblems(errs []error, keys map[string]string) []error {
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		var ce *jwks.ConfigError
		if errors.As(e, &ce) {
			if key, ok := keys[ce.Field]; ok {
				e = &Problem{Key: key, Message: translateProblem(ce.Field, ce.Problem)}
			}
		}
		out = append(out, e)
	}
	return out
}
