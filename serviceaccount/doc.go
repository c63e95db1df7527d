// Package serviceaccount reads the identity of a Kubernetes workload from its
// ServiceAccount token, and checks it against per-route allow lists.
//
// A token that Kubernetes issues to a pod's ServiceAccount has a sub of the form
// system:serviceaccount:<namespace>:<name>, and a kubernetes.io claim with the
// namespace, the ServiceAccount, the pod and the node. Parse reads sub strictly into
// an Identity; KubernetesClaim reads the claim into a Workload and checks that it
// names the same ServiceAccount as sub; RequireWorkload holds every token of a
// cluster's issuer to both (a middleware.ClaimsCheck); an AllowList says which
// ServiceAccounts may call a route, and its Rule plugs into a middleware.Route or
// middleware.Issuer.
//
//	const cluster = "https://kubernetes.default.svc.cluster.local"
//	allow, err := serviceaccount.ParseAllow([]string{"payments/billing", "monitoring/*"})
//	...
//	cfg.Issuers = append(cfg.Issuers, middleware.Issuer{
//		Config:    jwks.Config{Issuer: cluster, ...},
//		Audiences: []string{"orders"},
//		Checks:    []middleware.ClaimsCheck{serviceaccount.RequireWorkload()},
//	})
//	cfg.Routes = append(cfg.Routes, middleware.Route{
//		Match: "POST /refunds",
//		Rules: []middleware.Rule{allow.Rule("serviceAccounts", cluster)},
//	})
//
// The configuration file does the same with an issuer's kubernetes block and a
// route's serviceAccounts (docs/kubernetes.md, "Service-to-service").
//
// # Names
//
// Parse accepts exactly what Kubernetes can issue: a namespace is an RFC 1123 DNS
// label (a-z, 0-9 and '-', at most 63 bytes; apimachinery's ValidateNamespaceName),
// and a ServiceAccount name an RFC 1123 DNS subdomain (the same with '.' between
// labels, at most 253 bytes; apimachinery's ValidateServiceAccountName). The name is
// not held to a DNS label: Kubernetes accepts ServiceAccounts such as
// "billing.v2", and a stricter rule would refuse tokens of workloads that exist.
// The dot adds no ambiguity: neither part can hold ':', '/' or '*', which separate
// them in sub and in allow-list entries. Anything else (other prefixes such as the
// group system:serviceaccounts:<namespace> or system:node:<name>, extra colons, empty
// parts, upper case, white space, control characters, non-ASCII look-alikes, a sub
// longer than MaxSubjectLength) is refused with ErrInvalidSubject.
//
// # Allow lists
//
// An entry is "namespace/name" for one ServiceAccount or "namespace/*" for every
// ServiceAccount of a namespace. AllowList.Allows is two map look-ups.
//
// # Errors
//
// Every error matches one sentinel with errors.Is: ErrInvalidSubject,
// ErrNoKubernetesClaim, ErrInvalidKubernetesClaim, ErrClaimMismatch, ErrOtherIssuer,
// ErrInvalidEntry (inside an *EntryError naming the entry's index) or
// ErrEmptyAllowList. No message
// quotes a token's claims: the Gate logs a subject only as a hash.
//
// The package imports the standard library and middleware alone.
package serviceaccount
