package policy

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokengate/tokengate/internal/clip"
	"github.com/tokengate/tokengate/internal/joined"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/rules"
)

// Defaults of the configuration file (docs/configuration.md).
const (
	DefaultListen = ":8000"
	DefaultAdmin  = ":9090"
	ModeEnforce   = "enforce"
	ModeShadow    = "shadow"

	// maxConfigBytes bounds the configuration file: it is read on every change.
	maxConfigBytes = 1 << 20
)

// Config is the configuration file, as written. Every key is optional unless noted;
// Load applies the defaults and validates it. Field order and tags are the file's.
type Config struct {
	Listen   string `yaml:"listen"`   // where clients connect [":8000"]
	Upstream string `yaml:"upstream"` // the protected API: http, https or h2c (required for sidecar)
	Admin    string `yaml:"admin"`    // /metrics /healthz /readyz [":9090"]
	Mode     string `yaml:"mode"`     // enforce | shadow [enforce]
	Realm    string `yaml:"realm"`    // WWW-Authenticate realm [the upstream host]
	// UpstreamPaths is how the upstream reads methods and paths: strict | exact |
	// express | servlet [strict] (middleware.PathStyle).
	UpstreamPaths string   `yaml:"upstreamPaths"`
	Issuers       []Issuer `yaml:"issuers"` // at least one
	Tokens        Tokens   `yaml:"tokens"`
	Routes        []Route  `yaml:"routes"`
	Forward       Forward  `yaml:"forward"`
	Limits        Limits   `yaml:"limits"`
	// ExternalURL is how clients address the API: scheme, authority and any path
	// prefix stripped in front. DPoP proofs' htu is checked against it (required when
	// an issuer's dpop is not off).
	ExternalURL string `yaml:"externalURL"`
	TLS         TLS    `yaml:"tls"`    // serve clients over TLS [off]
	Replay      Replay `yaml:"replay"` // the store of single uses [memory]
	// Resource publishes RFC 9728 protected-resource metadata [off].
	Resource Resource `yaml:"resource"`
	// Authz is the decision service for gateways, `tokengate authz` [off].
	Authz Authz `yaml:"authz"`
}

// Authz is the decision service for gateways (nginx auth_request, Traefik forwardAuth,
// Envoy ext_authz): `tokengate authz` answers on Listen whether a request may pass.
type Authz struct {
	Listen string `yaml:"listen"` // host:port the gateways ask (required for authz) [off]
}

// Resource is the API as its clients (MCP clients among them) discover it.
type Resource struct {
	Identifier    string `yaml:"identifier"`    // the resource URL; an accepted audience too
	Path          string `yaml:"path"`          // where the metadata is served [the RFC 9728 well-known path]
	Name          string `yaml:"name"`          // resource_name
	Documentation string `yaml:"documentation"` // resource_documentation, a URL
}

// TLS makes the traffic listener serve TLS. Both files are read again when they
// change (a renewed certificate needs no restart).
type TLS struct {
	Cert string `yaml:"cert"` // PEM certificate chain
	Key  string `yaml:"key"`  // PEM private key
	// ClientCA asks clients for a certificate and verifies it against these PEM CAs,
	// for certificate-bound tokens (RFC 8705). A client without one is still served.
	ClientCA string `yaml:"clientCA"`
}

// Replay is the store of single uses: the jtis of DPoP proofs and of single-use tokens.
type Replay struct {
	Store string      `yaml:"store"` // memory (one replica) | redis [memory]
	Redis RedisConfig `yaml:"redis"`
}

// RedisConfig is a Redis shared by the replicas (replay.store: redis).
type RedisConfig struct {
	Addrs        []string      `yaml:"addrs"`        // host:port; several: a Cluster (or the sentinels)
	MasterName   string        `yaml:"masterName"`   // Sentinel: the master's name
	UsernameFile string        `yaml:"usernameFile"` // ACL user, from a file [none]
	PasswordFile string        `yaml:"passwordFile"` // password, from a file [none]
	TLS          bool          `yaml:"tls"`          // TLS to Redis [false]
	CAFile       string        `yaml:"caFile"`       // PEM CAs for Redis's certificate [system roots]
	Timeout      time.Duration `yaml:"timeout"`      // per use; then 503 [50ms]
}

// Replay stores.
const (
	StoreMemory = "memory"
	StoreRedis  = "redis"
)

// Issuer is one trusted authorization server.
type Issuer struct {
	Issuer     string   `yaml:"issuer"`     // exact iss (required)
	JWKSURI    string   `yaml:"jwksURI"`    // skip discovery and use this [discover]
	JWKSFile   string   `yaml:"jwksFile"`   // or read keys from a file, re-read on change
	JWKS       string   `yaml:"jwks"`       // or the key set itself, a JSON document
	Audiences  []string `yaml:"audiences"`  // any of them must be in aud (required)
	Algorithms []string `yaml:"algorithms"` // [RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA]
	TokenType  string   `yaml:"tokenType"`  // "at+jwt" to require RFC 9068 typing [any]
	ScopeClaim string   `yaml:"scopeClaim"` // claim holding scopes [scope, then scp, then scopes]
	// AudienceClaims carry the audience instead of aud, for an issuer whose access
	// tokens have none (AWS Cognito: [client_id]); tokens with aud are then refused.
	AudienceClaims []string `yaml:"audienceClaims"`
	Refresh        Refresh  `yaml:"refresh"`      // key refresh schedule
	CAFile         string   `yaml:"caFile"`       // PEM bundle for a private CA [system roots]
	InsecureHTTP   bool     `yaml:"insecureHTTP"` // plain http to a non-loopback issuer (warns) [false]
	DPoP           string   `yaml:"dpop"`         // DPoP-bound tokens: off | allowed | required [off]
	// Introspection asks the issuer about tokens (RFC 7662) [off].
	Introspection Introspection `yaml:"introspection"`
	// Rules must all hold for this issuer's tokens on every route that needs one [none].
	Rules []Rule `yaml:"rules"`
	// Kubernetes makes this issuer a Kubernetes cluster's ServiceAccount issuer [off].
	Kubernetes *Kubernetes `yaml:"kubernetes"`
}

// Kubernetes makes an issuer a Kubernetes cluster's ServiceAccount issuer
// (docs/kubernetes.md, "Service-to-service"). Its tokens must be workloads': a sub
// that names a ServiceAccount, system:serviceaccount:<namespace>:<name>, and a
// kubernetes.io claim that agrees (else 401, reason claims). Routes may then list the ServiceAccounts
// they take (routes[].serviceAccounts), and allowed requests carry the namespace and
// the ServiceAccount (forward.kubernetes). `kubernetes: {}` is a cluster's in-cluster
// defaults; so is `kubernetes:` with nothing after it.
type Kubernetes struct {
	// Source is where the keys come from: inCluster, the API server's /openid/v1/jwks
	// with the pod's token; or public, the issuer's own discovery, as EKS, GKE and
	// AKS publish it. [inCluster; none with jwksFile or jwks, which hold the keys]
	Source    string `yaml:"source"`
	APIServer string `yaml:"apiServer"` // inCluster: the API server [https://kubernetes.default.svc]
	TokenFile string `yaml:"tokenFile"` // inCluster: the pod's token, re-read at every fetch [the mounted one]
	CAFile    string `yaml:"caFile"`    // inCluster: the cluster's CA [the mounted one]
}

// Where a Kubernetes issuer's keys come from (kubernetes.source), and the in-cluster
// defaults: what every pod has mounted, and the API server's name in every cluster.
const (
	SourceInCluster = "inCluster"
	SourcePublic    = "public"

	DefaultAPIServer = "https://kubernetes.default.svc"
	DefaultTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

	// KubernetesJWKSPath and KubernetesDiscoveryPath are the API server's paths of
	// its ServiceAccount issuer's key set and discovery document.
	KubernetesJWKSPath      = "/openid/v1/jwks"
	KubernetesDiscoveryPath = "/.well-known/openid-configuration"
)

// Rule is a CEL expression over claims and request that must be true (docs/rules.md).
type Rule struct {
	Name string `yaml:"name"` // in the log line of a denial, never in a metric label (required)
	Expr string `yaml:"expr"` // of type bool, checked at load (required)
}

// Introspection is an issuer's introspection endpoint and what goes to it.
type Introspection struct {
	Endpoint         string        `yaml:"endpoint"`         // [the issuer's metadata: introspection_endpoint]
	ClientID         string        `yaml:"clientID"`         // client_secret_basic user (required when on)
	ClientSecretFile string        `yaml:"clientSecretFile"` // its secret, from a file (required when on)
	OpaqueTokens     bool          `yaml:"opaqueTokens"`     // introspect tokens that are not JWTs (one issuer at most) [false]
	Always           bool          `yaml:"always"`           // introspect this issuer's JWTs too [false]
	CacheTTL         time.Duration `yaml:"cacheTTL"`         // reuse an answer this long, never past exp [60s]
	Timeout          time.Duration `yaml:"timeout"`          // per call; then 503 [2s]
}

// Refresh is an issuer's key refresh schedule.
type Refresh struct {
	Min             time.Duration `yaml:"min"`             // [1m]
	Max             time.Duration `yaml:"max"`             // [1h]
	UnknownKidEvery time.Duration `yaml:"unknownKidEvery"` // [30s]
	UnknownKidWait  time.Duration `yaml:"unknownKidWait"`  // [2s]
}

// Tokens says how tokens are read.
type Tokens struct {
	Leeway      *time.Duration `yaml:"leeway"`      // clock skew on exp/nbf/iat [30s]
	MaxLifetime time.Duration  `yaml:"maxLifetime"` // reject when exp - iat is longer [no limit]
	MaxBytes    int            `yaml:"maxBytes"`    // longer tokens are malformed [8192]
	Cookie      string         `yaml:"cookie"`      // also accept the token from this cookie [off]
	Query       string         `yaml:"query"`       // also accept it from this query parameter [off]
	Cache       Cache          `yaml:"cache"`
	DPoP        DPoPProofs     `yaml:"dpop"`
	// ClientCertificate says where the client certificate of certificate-bound tokens
	// (cnf.x5t#S256) comes from.
	ClientCertificate ClientCertificate `yaml:"clientCertificate"`
	// ClientCertificateHeader is the header a trusted front proxy puts the certificate's
	// hash in (X-Forwarded-Client-Cert, Envoy's form), with clientCertificate.from:
	// header. It is removed before the upstream.
	ClientCertificateHeader string `yaml:"clientCertificateHeader"`
}

// DPoPProofs says how DPoP proofs are checked.
type DPoPProofs struct {
	MaxAge     time.Duration `yaml:"maxAge"`     // how old a proof's iat may be [60s]
	Algorithms []string      `yaml:"algorithms"` // proof algorithms [the asymmetric ones]
	Nonces     bool          `yaml:"nonces"`     // require server nonces (DPoP-Nonce) [false]
	// NonceSecretFile holds the nonce secret (at least 32 bytes), the same for every
	// replica. Empty: a random secret of this process, right for one replica only.
	NonceSecretFile string `yaml:"nonceSecretFile"`
}

// ClientCertificate says where a client certificate comes from.
type ClientCertificate struct {
	From string `yaml:"from"` // tls (this listener, tls.clientCA) | header [tls]
}

// Cache is the verified-token cache.
type Cache struct {
	Entries *int      `yaml:"entries"` // [10000, 0 turns it off]
	Bytes   *ByteSize `yaml:"bytes"`   // memory it may take [8MiB]
}

// Limits bound what a client holds open through the sidecar.
type Limits struct {
	// BodyIdle is the longest wait for the next bytes of an allowed request's body;
	// then the request is cut with 408 [30s].
	BodyIdle time.Duration `yaml:"bodyIdle"`
	// TunnelIdle closes a WebSocket tunnel with no bytes either way for this long [5m].
	TunnelIdle time.Duration `yaml:"tunnelIdle"`
}

// Defaults of Limits.
const (
	DefaultBodyIdle   = 30 * time.Second
	DefaultTunnelIdle = 5 * time.Minute
)

// Route is the policy of the requests its pattern matches.
type Route struct {
	Match     string   `yaml:"match"`     // Go 1.22 ServeMux pattern (required)
	Public    bool     `yaml:"public"`    // no token needed
	Scopes    []string `yaml:"scopes"`    // all of these
	AnyScopes []string `yaml:"anyScopes"` // at least one of these
	Shadow    bool     `yaml:"shadow"`    // this route only: forward denials anyway
	WebSocket bool     `yaml:"websocket"` // let WebSocket handshakes through [false]
	SingleUse bool     `yaml:"singleUse"` // each token's jti once [false]
	Rules     []Rule   `yaml:"rules"`     // must all hold, after the scopes [none]
	// ServiceAccounts are the Kubernetes workloads this route takes, namespace/name
	// or namespace/*, from the tokens of issuers with kubernetes only [any token].
	ServiceAccounts []string `yaml:"serviceAccounts"`
}

// Forward says what the upstream receives with an allowed request.
type Forward struct {
	// Claims maps a claim to the header that carries its value to the upstream.
	// [sub: X-Auth-Subject, client_id: X-Auth-Client-Id, scope: X-Auth-Scopes]
	Claims map[string]string `yaml:"claims"`
	// Values are headers computed from the claims by CEL expressions [none].
	Values []ForwardValue `yaml:"values"`
	// RemoveAuthorization drops the token before the upstream [false]. A token that
	// tokengate did not verify (on a public route) is dropped whatever this says.
	RemoveAuthorization bool `yaml:"removeAuthorization"`
	// StripHeaders are removed from every request, in any spelling, because upstream
	// frameworks act on them: method overrides, URL rewrites, client addresses.
	// [DefaultStripHeaders(); [] for none]
	StripHeaders []string `yaml:"stripHeaders"`
	// Kubernetes names the headers of a workload's identity, sent with the tokens of
	// issuers with kubernetes [X-Auth-Namespace, X-Auth-ServiceAccount].
	Kubernetes KubernetesHeaders `yaml:"kubernetes"`
}

// KubernetesHeaders name the headers that carry a Kubernetes workload's identity to
// the upstream, from sub, with an allowed request whose token is of an issuer with
// kubernetes. A name left out is its default; "" sends no such header.
type KubernetesHeaders struct {
	Namespace      *string `yaml:"namespace"`      // the ServiceAccount's namespace [X-Auth-Namespace]
	ServiceAccount *string `yaml:"serviceAccount"` // its name [X-Auth-ServiceAccount]
}

// Defaults of forward.kubernetes.
const (
	DefaultNamespaceHeader      = "X-Auth-Namespace"
	DefaultServiceAccountHeader = "X-Auth-ServiceAccount"
)

// ForwardValue is a header whose value a CEL expression computes from the verified
// claims (docs/rules.md, "Headers from claims"), such as a list claim joined:
//
//	values: [{header: X-Auth-Groups, expr: 'claims.groups.join(",")'}]
type ForwardValue struct {
	Header string `yaml:"header"` // the header's name, as forward.claims' (required)
	Expr   string `yaml:"expr"`   // of type string, over claims only, checked at load (required)
}

// DefaultStripHeaders returns the headers a client may not send to the upstream when
// forward.stripHeaders is not set: frameworks act on each of them, and tokengate
// decided on the request without them. The slice is the caller's own.
func DefaultStripHeaders() []string { return slices.Clone(defaultStripHeaders[:]) }

var defaultStripHeaders = [...]string{
	// The method: Express's method-override, Symfony, Laravel, ASP.NET, OData, Google APIs.
	"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override",
	// The path: Symfony and Zend's IIS support, IIS URL Rewrite, nginx conventions.
	"X-Original-URL", "X-Rewrite-URL", "X-Original-URI", "X-Original-Method",
	// The client's address and scheme, which only a trusted proxy may set.
	"X-Real-IP", "X-Client-IP", "True-Client-IP", "CF-Connecting-IP", "Fastly-Client-IP",
	"X-Cluster-Client-IP", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server",
	"X-Forwarded-Scheme", "X-Forwarded-Ssl", "X-Forwarded-Uri", "X-Url-Scheme",
	"Front-End-Https", "X-Original-Host", "X-Host",
	// The client certificate, which only a trusted proxy may vouch for.
	"X-Forwarded-Client-Cert",
}

// DefaultClaimHeaders returns the claim headers when forward.claims is not set. The map
// is the caller's own.
func DefaultClaimHeaders() map[string]string {
	return map[string]string{"sub": "X-Auth-Subject", "client_id": "X-Auth-Client-Id", "scope": "X-Auth-Scopes"}
}

// Loaded is a validated configuration, ready to run.
type Loaded struct {
	File     Config
	Gate     middleware.Config
	Upstream *url.URL
	Listen   string
	Admin    string
	Forward  Forward
	Limits   Limits
	// WebSocket lists the route patterns that let WebSocket handshakes through.
	WebSocket map[string]bool
	// TLS is the traffic listener's TLS, nil for plain HTTP.
	TLS *TLS
	// Replay is the replay store's configuration, with defaults applied.
	Replay Replay
	// AuthzListen is where the decision service for gateways listens (authz.listen),
	// "" when the file does not say.
	AuthzListen string

	values       []valueHeader // forward.values, compiled
	kube         *kubeHeaders  // forward.kubernetes; nil without an issuer with kubernetes
	identityOnce sync.Once
	identity     *Identity
}

// Problem is one thing wrong with a configuration file: the key, as the file spells it
// ("issuers[0].audiences"), the line it is on (0 when the key is missing), and what is
// wrong.
type Problem struct {
	Path    string
	Key     string
	Line    int
	Message string
}

func (p *Problem) Error() string {
	where := p.Path
	if p.Line > 0 {
		where += ":" + strconv.Itoa(p.Line)
	}
	if p.Key == "" {
		return where + ": " + echo(p.Message)
	}
	return where + ": " + echo(p.Key) + ": " + echo(p.Message)
}

// maxEcho bounds how much of the file a problem repeats: a value of megabytes (a
// pasted key, say) is named, not printed, in a log that may be shipped elsewhere.
const maxEcho = 400

// echo shortens s to maxEcho bytes, on a character boundary, saying how long it was.
func echo(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	return clip.Prefix(s, maxEcho) + fmt.Sprintf("… (%d bytes in all)", len(s))
}

// Overrides replace top-level settings of the file: the command line's --listen,
// --admin and --upstream. Empty fields change nothing.
type Overrides struct {
	Listen, Admin, Upstream string
	// AuthzListen overrides authz.listen (tokengate authz --listen).
	AuthzListen string
}

func (o Overrides) apply(c *Config) {
	if o.Listen != "" {
		c.Listen = o.Listen
	}
	if o.Admin != "" {
		c.Admin = o.Admin
	}
	if o.Upstream != "" {
		c.Upstream = o.Upstream
	}
	if o.AuthzListen != "" {
		c.Authz.Listen = o.AuthzListen
	}
}

// Purpose says what a configuration is loaded for: what each needs of the file differs.
type Purpose uint8

const (
	// ForProxy loads a configuration the sidecar runs: upstream is required.
	ForProxy Purpose = iota
	// ForCheck loads one the check command decides with: upstream may be missing.
	ForCheck
	// ForAuthz loads one the decision service for gateways (`tokengate authz`) runs:
	// authz.listen is required, upstream may be missing (the gateway forwards).
	ForAuthz
	// ForService loads one a Go service decides with (Watch): upstream may be missing,
	// and listen, admin and forward are the service's own business.
	ForService
)

// LoadFile reads and validates a configuration file. Every problem comes back at once,
// each a *Problem naming the key and its line.
func LoadFile(path string, p Purpose, o Overrides) (*Loaded, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Problem{Path: path, Message: err.Error()}
	}
	defer f.Close()
	data, err := readCapped(f, maxConfigBytes)
	if err != nil {
		return nil, &Problem{Path: path, Message: err.Error()}
	}
	return Load(path, data, p, o)
}

func readCapped(f io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("the file is larger than %d bytes", limit)
	}
	return data, nil
}

// Load validates the bytes of a configuration file named path (for messages), for the
// purpose p (ForProxy requires upstream, ForAuthz authz.listen).
func Load(path string, data []byte, p Purpose, o Overrides) (*Loaded, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlProblem(path, err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, &Problem{Path: path, Message: "the file is empty"}
	}
	doc := root.Content[0]
	lines := map[string]int{}
	var problems []error
	checkKeys(path, doc, reflect.TypeOf(Config{}), "", lines, &problems, map[aliasVisit]bool{})
	// yaml.v3 compares every pair of keys of a mapping, and words an error for every
	// pair that repeats: find repeats, and too many keys, before decoding.
	var shape []error
	mappingProblems(path, doc, map[*yaml.Node]bool{}, &shape)
	if len(shape) > 0 {
		return nil, sorted(append(problems, shape...))
	}
	// Unknown keys do not stop the checks that follow: every problem is reported in
	// one pass, sorted by line. Decoding ignores the unknown keys (they are reported
	// already); a value of the wrong type stops there, since what resolve would say of
	// the fields it left empty would be noise.
	var file Config
	if err := doc.Decode(&file); err != nil {
		return nil, sorted(append(problems, yamlProblems(path, err)...))
	}
	defaultKubernetes(doc, &file)
	o.apply(&file)
	l, errs := file.resolve(p)
	for _, e := range errs {
		problems = append(problems, locate(path, e, lines))
	}
	if len(problems) > 0 {
		return nil, sorted(problems)
	}
	return l, nil
}

// sorted joins problems in the order of their lines; those without a line (a key
// that is missing) come last, in the order they were found.
func sorted(problems []error) error {
	line := func(err error) int {
		var p *Problem
		if errors.As(err, &p) && p.Line > 0 {
			return p.Line
		}
		return math.MaxInt
	}
	slices.SortStableFunc(problems, func(a, b error) int { return cmp.Compare(line(a), line(b)) })
	return errors.Join(problems...)
}

// yamlProblems turns a decoding error into Problems: one per value of the wrong type
// (yaml.v3 lists them all in one *yaml.TypeError).
func yamlProblems(path string, err error) []error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []error{yamlProblem(path, err)}
	}
	out := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		out = append(out, yamlProblem(path, errors.New(msg)))
	}
	return out
}

// checkKeys walks a mapping node against the struct type it decodes into and reports
// every key the type does not have, with its line: unknown keys are errors, so that a
// misspelt "audience" does not silently turn a check off. It records the line of every
// key path it sees, for the messages of later checks.
type aliasVisit struct {
	n *yaml.Node
	t reflect.Type
}

func checkKeys(path string, n *yaml.Node, t reflect.Type, prefix string, lines map[string]int, problems *[]error, visited map[aliasVisit]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.AliasNode:
		// What an alias names is checked once per type it is used as: following every
		// alias would check a list of N aliases to a list of M items N·M times.
		v := aliasVisit{n.Alias, t}
		if visited[v] {
			return
		}
		visited[v] = true
		checkKeys(path, n.Alias, t, prefix, lines, problems, visited)
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			if tag := strings.Split(f.Tag.Get("yaml"), ",")[0]; tag != "" {
				fields[tag] = f.Type
				names = append(names, tag)
			}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(prefix, k.Value)
			ft, ok := fields[k.Value]
			switch {
			case !ok:
				*problems = append(*problems, &Problem{Path: path, Key: key, Line: k.Line,
					Message: fmt.Sprintf("unknown key (known here: %s)", strings.Join(names, ", "))})
				continue
			case seen[k.Value]:
				*problems = append(*problems, &Problem{Path: path, Key: key, Line: k.Line, Message: "appears twice"})
				continue
			}
			seen[k.Value] = true
			lines[key] = k.Line
			checkKeys(path, v, ft, key, lines, problems, visited)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			key := fmt.Sprintf("%s[%d]", prefix, i)
			lines[key] = item.Line
			checkKeys(path, item, t.Elem(), key, lines, problems, visited)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			lines[join(prefix, n.Content[i].Value)] = n.Content[i].Line
		}
	}
}

// maxMappingKeys bounds the keys of one mapping.
const maxMappingKeys = 1000

// mappingProblems reports, once per node, mappings with a key twice or more than
// maxMappingKeys keys.
func mappingProblems(path string, n *yaml.Node, seen map[*yaml.Node]bool, problems *[]error) {
	if n == nil || seen[n] {
		return
	}
	seen[n] = true
	if n.Kind == yaml.AliasNode {
		mappingProblems(path, n.Alias, seen, problems)
		return
	}
	if n.Kind == yaml.MappingNode {
		if len(n.Content)/2 > maxMappingKeys {
			*problems = append(*problems, &Problem{Path: path, Line: n.Line, Message: fmt.Sprintf("a mapping of more than %d keys", maxMappingKeys)})
			return
		}
		keys := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if keys[k.Value] {
				*problems = append(*problems, &Problem{Path: path, Line: k.Line, Message: fmt.Sprintf("key %q appears twice", k.Value)})
			}
			keys[k.Value] = true
		}
	}
	for _, c := range n.Content {
		mappingProblems(path, c, seen, problems)
	}
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// yamlProblem turns a YAML error ("yaml: line 3: ...") into a Problem.
func yamlProblem(path string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, after
			}
		}
	}
	msg = strings.ReplaceAll(msg, "!!str ", "")
	msg = yamlTag.ReplaceAllString(msg, "a $1")
	msg = goType.ReplaceAllStringFunc(msg, func(s string) string {
		if strings.HasPrefix(s, "[]") {
			return "a list"
		}
		if strings.HasPrefix(s, "map[") {
			return "a mapping"
		}
		return "a mapping"
	})
	msg = strings.ReplaceAll(msg, "time.Duration", "a duration such as 30s")
	return &Problem{Path: path, Line: line, Message: msg}
}

var (
	yamlTag = regexp.MustCompile(`!!([a-z]+)`)
	goType  = regexp.MustCompile(`(\[\]|map\[string\])?\*?(policy|middleware|jwks)\.[A-Za-z]+`)
)

// locate gives a validation error from the middleware or jwks its key and line.
func locate(path string, err error, lines map[string]int) error {
	var fe *middleware.FieldError
	var ce *jwks.ConfigError
	var p *Problem
	switch {
	case errors.As(err, &p):
		p.Path = path
		if p.Line == 0 {
			p.Line = lineOf(p.Key, lines)
		}
		return p
	case errors.As(err, &fe):
		key := fileKey(fe.Field)
		return &Problem{Path: path, Key: key, Line: lineOf(key, lines), Message: translateProblem(fe.Field, fe.Problem)}
	case errors.As(err, &ce):
		key := fileKey(ce.Field)
		return &Problem{Path: path, Key: key, Line: lineOf(key, lines), Message: translateProblem(ce.Field, ce.Problem)}
	}
	return &Problem{Path: path, Message: err.Error()}
}

// fileKey is the file's key for a Go field path, or the path itself when the file has
// no such key.
func fileKey(goPath string) string {
	if k, ok := yamlKey(goPath); ok {
		return k
	}
	return goPath
}

// lineOf finds the line of a key, or of its nearest parent that is in the file.
func lineOf(key string, lines map[string]int) int {
	for key != "" {
		if l, ok := lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// resolve applies the defaults, validates what the middleware does not, and builds the
// middleware's configuration, returning every problem.
func (c Config) resolve(p Purpose) (*Loaded, []error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	l := &Loaded{File: c, Listen: c.Listen, Admin: c.Admin, Forward: c.Forward}
	if l.Listen == "" {
		l.Listen = DefaultListen
	}
	if l.Admin == "" {
		l.Admin = DefaultAdmin
	}
	for key, addr := range map[string]string{"listen": l.Listen, "admin": l.Admin} {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			bad(key, "%q is not host:port (for example \":8000\" or \"127.0.0.1:8000\")", addr)
		}
	}
	if l.Listen == l.Admin {
		bad("admin", "is the same address as listen")
	}
	switch {
	case c.Upstream == "" && p == ForProxy:
		bad("upstream", "is required: the URL of the protected API, for example http://127.0.0.1:8080")
	case c.Upstream != "":
		u, err := url.Parse(c.Upstream)
		if err != nil || !upstreamSchemes[u.Scheme] || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			bad("upstream", "%q is not an http, https or h2c URL with a host and nothing else (no credentials, query or fragment)", c.Upstream)
		} else {
			l.Upstream = u
		}
	}
	l.AuthzListen = c.Authz.Listen
	switch {
	case l.AuthzListen == "" && p == ForAuthz:
		bad("authz.listen", "is required for tokengate authz: the host:port gateways ask, for example \"127.0.0.1:9191\"")
	case l.AuthzListen != "":
		if _, port, err := net.SplitHostPort(l.AuthzListen); err != nil || port == "" {
			bad("authz.listen", "%q is not host:port (for example \"127.0.0.1:9191\")", l.AuthzListen)
		} else if l.AuthzListen == l.Admin {
			bad("authz.listen", "is the same address as admin")
		}
	}
	l.Limits = c.Limits
	if l.Limits.BodyIdle == 0 {
		l.Limits.BodyIdle = DefaultBodyIdle
	}
	if l.Limits.TunnelIdle == 0 {
		l.Limits.TunnelIdle = DefaultTunnelIdle
	}
	for key, d := range map[string]time.Duration{"limits.bodyIdle": l.Limits.BodyIdle, "limits.tunnelIdle": l.Limits.TunnelIdle} {
		if d < 0 {
			bad(key, "must not be negative")
		}
	}
	if l.Forward.StripHeaders == nil {
		l.Forward.StripHeaders = DefaultStripHeaders()
	}
	for i, h := range l.Forward.StripHeaders {
		switch {
		case !validHeaderName(h):
			bad(fmt.Sprintf("forward.stripHeaders[%d]", i), "%q is not a header name", h)
		case normalize(h) == "authorization" || normalize(h) == "host":
			bad(fmt.Sprintf("forward.stripHeaders[%d]", i), "%q cannot be stripped: use forward.removeAuthorization for the token", h)
		}
	}
	mode := c.Mode
	switch mode {
	case "":
		mode = ModeEnforce
	case ModeEnforce, ModeShadow:
	default:
		bad("mode", "%q: use enforce or shadow", c.Mode)
	}
	realm := c.Realm
	if realm == "" && l.Upstream != nil {
		realm = l.Upstream.Hostname()
	}
	if len(c.Routes) == 0 {
		bad("routes", "at least one route is required; \"/\" with no scopes accepts any valid token")
	}
	for i, r := range c.Routes {
		if r.Match == "" {
			bad(fmt.Sprintf("routes[%d].match", i), "is required")
		}
	}
	if l.Forward.Claims == nil {
		l.Forward.Claims = DefaultClaimHeaders()
	}
	seen := map[string]string{} // a header, normalized: what carries it, as a problem says
	for _, claim := range sortedKeys(l.Forward.Claims) {
		h := l.Forward.Claims[claim]
		key := "forward.claims." + claim
		switch {
		case claim == "":
			bad("forward.claims", "has an empty claim name")
		case !validHeaderName(h):
			bad(key, "%q is not a header name", h)
		case reservedHeader(h):
			bad(key, "%q is a header the proxy manages; use an X-... name", h)
		case seen[normalize(h)] != "":
			bad(key, "header %q is also used for %s", h, seen[normalize(h)])
		}
		seen[normalize(h)] = fmt.Sprintf("claim %q", claim)
	}

	gc := middleware.Config{
		Realm:     realm,
		Shadow:    mode == ModeShadow,
		PathStyle: middleware.PathStyle(c.UpstreamPaths),
		Tokens: middleware.Tokens{
			MaxLifetime: c.Tokens.MaxLifetime,
			MaxBytes:    c.Tokens.MaxBytes,
			Cookie:      c.Tokens.Cookie,
			Query:       c.Tokens.Query,
		},
	}
	if c.Tokens.Leeway != nil {
		gc.Tokens.Leeway = *c.Tokens.Leeway
		if gc.Tokens.Leeway == 0 {
			gc.Tokens.Leeway = -1 // explicitly none; zero means the default in Go
		}
	}
	if e := c.Tokens.Cache.Entries; e != nil {
		if *e == 0 {
			gc.Tokens.NoCache = true
		} else {
			gc.Tokens.CacheEntries = *e
		}
	}
	if b := c.Tokens.Cache.Bytes; b != nil {
		if *b <= 0 {
			bad("tokens.cache.bytes", "must be positive (entries: 0 turns the cache off)")
		}
		gc.Tokens.CacheBytes = int64(*b)
	}
	// The cache keeps only the claims forward.claims names (scopes are kept anyway),
	// and those forward.values and the rules read.
	gc.Tokens.KeepClaims = []string{}
	for _, claim := range sortedKeys(l.Forward.Claims) {
		if claim != "scope" {
			gc.Tokens.KeepClaims = append(gc.Tokens.KeepClaims, claim)
		}
	}
	errs = append(errs, c.resolveValues(l, &gc, seen)...)
	for _, iss := range c.Issuers {
		gc.Issuers = append(gc.Issuers, middleware.Issuer{
			Config: jwks.Config{
				Issuer: iss.Issuer, JWKSURI: iss.JWKSURI, JWKSFile: iss.JWKSFile, JWKS: iss.JWKS, Algorithms: iss.Algorithms,
				Refresh: jwks.Refresh{
					Min: iss.Refresh.Min, Max: iss.Refresh.Max,
					UnknownKIDEvery: iss.Refresh.UnknownKidEvery, UnknownKIDWait: iss.Refresh.UnknownKidWait,
				},
				CAFile: iss.CAFile, InsecureHTTP: iss.InsecureHTTP,
			},
			Audiences: iss.Audiences, TokenType: iss.TokenType, ScopeClaim: iss.ScopeClaim,
			AudienceClaims: iss.AudienceClaims,
		})
	}
	for i, iss := range c.Issuers {
		gc.Issuers[i].DPoP = middleware.DPoPMode(iss.DPoP)
		in := iss.Introspection
		gc.Issuers[i].Introspection = middleware.Introspection{
			Endpoint: in.Endpoint, ClientID: in.ClientID, OpaqueTokens: in.OpaqueTokens, Always: in.Always,
			CacheTTL: in.CacheTTL, Timeout: in.Timeout,
		}
		if in.ClientSecretFile != "" {
			secret, err := readSecret(in.ClientSecretFile)
			if err != nil {
				bad(fmt.Sprintf("issuers[%d].introspection.clientSecretFile", i), "%v", err)
			}
			gc.Issuers[i].Introspection.ClientSecret = secret
		}
	}
	for _, r := range c.Routes {
		gc.Routes = append(gc.Routes, middleware.Route{Match: r.Match, Public: r.Public, Scopes: r.Scopes, AnyScopes: r.AnyScopes,
			Shadow: r.Shadow, WebSocket: r.WebSocket, SingleUse: r.SingleUse})
	}
	kubeIssuers, kubeKeys, kubeErrs := c.resolveKubernetes(l, &gc, seen)
	errs = append(errs, kubeErrs...)
	errs = append(errs, c.resolveSenderConstraints(l, &gc)...)
	errs = append(errs, c.resolveRules(&gc)...)
	errs = append(errs, c.resolveServiceAccounts(&gc, kubeIssuers)...)
	if err := middleware.Validate(gc); err != nil {
		errs = append(errs, kubeProblems(joined.Flatten(err), kubeKeys)...)
	}
	l.Gate = gc
	return l, errs
}

// resolveSenderConstraints resolves what DPoP-bound, certificate-bound and single-use
// tokens need: the external URL, proofs, where client certificates come from, the
// traffic listener's TLS and the replay store.
func (c Config) resolveSenderConstraints(l *Loaded, gc *middleware.Config) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	gc.ExternalURL = c.ExternalURL
	gc.Resource = middleware.Resource(c.Resource)
	d := c.Tokens.DPoP
	gc.Tokens.DPoP = middleware.DPoPProofs{MaxAge: d.MaxAge, Algorithms: d.Algorithms}
	switch {
	case d.Nonces && d.NonceSecretFile != "":
		secret, err := readSecret(d.NonceSecretFile)
		if err != nil {
			bad("tokens.dpop.nonceSecretFile", "%v", err)
		}
		gc.Tokens.DPoP.NonceSecret = secret
	case d.Nonces:
		gc.Tokens.DPoP.NonceSecret = processNonceSecret()
	case d.NonceSecretFile != "":
		bad("tokens.dpop.nonceSecretFile", "is set while tokens.dpop.nonces is false: turn nonces on, or remove it")
	}

	header := c.Tokens.ClientCertificateHeader
	switch c.Tokens.ClientCertificate.From {
	case "", "tls":
		if header != "" {
			bad("tokens.clientCertificateHeader", "is read only with tokens.clientCertificate.from: header")
		}
	case "header":
		if header == "" {
			bad("tokens.clientCertificateHeader", "is required with tokens.clientCertificate.from: header (X-Forwarded-Client-Cert for Envoy and Istio)")
		}
		gc.Tokens.ClientCertificateHeader = header
		// Whatever a client sends in it must never reach the upstream.
		if !slices.ContainsFunc(l.Forward.StripHeaders, func(h string) bool { return normalize(h) == normalize(header) }) {
			l.Forward.StripHeaders = append(slices.Clone(l.Forward.StripHeaders), header)
		}
	default:
		bad("tokens.clientCertificate.from", "%q: use tls or header", c.Tokens.ClientCertificate.From)
	}

	t := c.TLS
	switch {
	case t == TLS{}:
	case t.Cert == "" || t.Key == "":
		bad("tls", "needs both cert and key")
	default:
		if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
			bad("tls.cert", "the certificate and key do not load: %v", err)
		}
		if t.ClientCA != "" {
			if _, err := loadCAs(t.ClientCA); err != nil {
				bad("tls.clientCA", "%v", err)
			}
		}
		l.TLS = &t
	}

	l.Replay = c.Replay
	r := &l.Replay
	if r.Store == "" {
		r.Store = StoreMemory
	}
	if r.Redis.Timeout == 0 {
		r.Redis.Timeout = DefaultRedisTimeout
	}
	switch r.Store {
	case StoreMemory:
		if len(r.Redis.Addrs) > 0 {
			bad("replay.redis", "is set while replay.store is memory: say store: redis")
		}
	case StoreRedis:
		if len(r.Redis.Addrs) == 0 {
			bad("replay.redis.addrs", "is required with replay.store: redis (host:port of the Redis the replicas share)")
		}
		for i, a := range r.Redis.Addrs {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				bad(fmt.Sprintf("replay.redis.addrs[%d]", i), "%q is not host:port", a)
			}
		}
		for key, f := range map[string]string{"replay.redis.usernameFile": r.Redis.UsernameFile, "replay.redis.passwordFile": r.Redis.PasswordFile} {
			if f == "" {
				continue
			}
			if _, err := readSecret(f); err != nil {
				bad(key, "%v", err)
			}
		}
		if r.Redis.CAFile != "" {
			if _, err := loadCAs(r.Redis.CAFile); err != nil {
				bad("replay.redis.caFile", "%v", err)
			}
		}
		if r.Redis.Timeout < 0 || r.Redis.Timeout > 5*time.Second {
			bad("replay.redis.timeout", "%s is outside 1ms to 5s: every single-use request waits up to this long", r.Redis.Timeout)
		}
	default:
		bad("replay.store", "%q: use memory or redis", r.Store)
	}
	return errs
}

// upstreamSchemes are the schemes upstream may have. h2c is HTTP/2 in clear text, for a
// gRPC API; the URL keeps it, and the sidecar's transport speaks it.
var upstreamSchemes = map[string]bool{"http": true, "https": true, "h2c": true}

// DefaultRedisTimeout bounds a use of the Redis replay store.
const DefaultRedisTimeout = 50 * time.Millisecond

// maxSecretBytes bounds a secret file: a password or a nonce secret, not a document.
const maxSecretBytes = 4096

// readSecret reads a secret file, without its trailing line break (editors and
// kubectl create secret --from-file keep one). Its content is never part of an error.
func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := readCapped(f, maxSecretBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	data = bytes.TrimRight(data, "\r\n")
	if len(data) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return data, nil
}

// Credentials reads the ACL user and the password from usernameFile and passwordFile,
// each "" when its file is not set. Their content is never part of an error.
func (r RedisConfig) Credentials() (username, password string, err error) {
	for _, f := range []struct {
		file string
		into *string
	}{{r.UsernameFile, &username}, {r.PasswordFile, &password}} {
		if f.file == "" {
			continue
		}
		b, err := readSecret(f.file)
		if err != nil {
			return "", "", err
		}
		*f.into = string(b)
	}
	return username, password, nil
}

// RootCAs reads caFile, the CAs of Redis's certificate: nil (the system roots) when it
// is not set.
func (r RedisConfig) RootCAs() (*x509.CertPool, error) {
	if r.CAFile == "" {
		return nil, nil
	}
	return loadCAs(r.CAFile)
}

// ClientCAs reads clientCA, the CAs of client certificates: nil (ask for none) when it
// is not set.
func (t TLS) ClientCAs() (*x509.CertPool, error) {
	if t.ClientCA == "" {
		return nil, nil
	}
	return loadCAs(t.ClientCA)
}

// loadCAs reads a PEM bundle of CA certificates.
func loadCAs(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// processNonceSecret is the DPoP nonce secret of a process without
// tokens.dpop.nonceSecretFile: random, the same across reloads of this process, and
// known to no other replica.
var processNonceSecret = sync.OnceValue(func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
})

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return http.CanonicalHeaderKey(s) != ""
}

// resolveValues compiles forward.values, each problem at its key; checks their
// headers as forward.claims' are (seen: the headers taken, normalized); and makes the
// token cache keep the claims they read. A value reads claims only (rules.ClaimsOnly):
// the identity headers are the same for every request a token makes, and a gateway's
// decision service sets them with no request to hand.
func (c Config) resolveValues(l *Loaded, gc *middleware.Config, seen map[string]string) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	opts := []rules.Option{rules.ClaimsOnly()}
	if gc.Tokens.MaxBytes > 0 {
		opts = append(opts, rules.WithClaimsBytes(gc.Tokens.MaxBytes))
	}
	var read []string
	every := false
	for i, fv := range c.Forward.Values {
		key := fmt.Sprintf("forward.values[%d]", i)
		h, n := fv.Header, normalize(fv.Header)
		switch {
		case h == "":
			bad(key+".header", "is required: the header that carries the value, for example X-Auth-Groups")
		case !validHeaderName(h):
			bad(key+".header", "%q is not a header name", h)
		case reservedHeader(h):
			bad(key+".header", "%q is a header the proxy manages; use an X-... name", h)
		case seen[n] != "":
			bad(key+".header", "header %q is also used for %s", h, seen[n])
		default:
			seen[n] = key
		}
		v, err := rules.CompileValue(rules.Spec{Name: fmt.Sprintf("forward.values.%d", i), Expr: fv.Expr}, opts...)
		for _, e := range joined.Flatten(err) {
			var re *rules.Error
			if !errors.As(e, &re) || re.Field != "expr" {
				bad(key, "%s", e.Error())
				continue
			}
			msg := re.Err.Error()
			if re.Line > 0 {
				msg = fmt.Sprintf("at %d:%d of the expression: %s", re.Line, re.Column, msg)
			}
			bad(key+".expr", "%s", msg)
		}
		if v == nil {
			continue
		}
		names, all := v.Claims()
		read, every = append(read, names...), every || all
		l.values = append(l.values, valueHeader{header: http.CanonicalHeaderKey(h), value: v})
	}
	switch {
	case gc.Tokens.KeepClaims == nil:
	case every:
		gc.Tokens.KeepClaims = nil
	case len(read) > 0:
		gc.Tokens.KeepClaims = slices.Compact(slices.Sorted(slices.Values(append(gc.Tokens.KeepClaims, read...))))
	}
	return errs
}

// resolveRules compiles the issuers' and routes' rules, each problem at its rule's
// key, and makes the token cache keep the claims the rules read.
func (c Config) resolveRules(gc *middleware.Config) []error {
	var errs []error
	var all []middleware.Rule
	compile := func(key string, specs []Rule) []middleware.Rule {
		if len(specs) == 0 {
			return nil
		}
		list := make([]rules.Spec, len(specs))
		for i, r := range specs {
			list[i] = rules.Spec{Name: r.Name, Expr: r.Expr}
		}
		// A rule's cost is bounded for the largest token this file accepts (a larger
		// one is refused before any rule runs).
		var opts []rules.Option
		if gc.Tokens.MaxBytes > 0 {
			opts = append(opts, rules.WithClaimsBytes(gc.Tokens.MaxBytes))
		}
		compiled, err := rules.Compile(list, opts...)
		for _, e := range joined.Flatten(err) {
			var re *rules.Error
			if !errors.As(e, &re) || re.Index < 0 {
				errs = append(errs, &Problem{Key: key, Message: e.Error()})
				continue
			}
			msg := re.Err.Error()
			if re.Line > 0 {
				msg = fmt.Sprintf("at %d:%d of the expression: %s", re.Line, re.Column, msg)
			}
			errs = append(errs, &Problem{Key: fmt.Sprintf("%s[%d].%s", key, re.Index, re.Field), Message: msg})
		}
		all = append(all, compiled...)
		return compiled
	}
	for i, iss := range c.Issuers {
		gc.Issuers[i].Rules = compile(fmt.Sprintf("issuers[%d].rules", i), iss.Rules)
	}
	for i, r := range c.Routes {
		gc.Routes[i].Rules = compile(fmt.Sprintf("routes[%d].rules", i), r.Rules)
	}
	if len(all) > 0 && gc.Tokens.KeepClaims != nil {
		names, every := rules.ClaimsUsed(all...)
		if every {
			gc.Tokens.KeepClaims = nil
		} else {
			gc.Tokens.KeepClaims = slices.Compact(slices.Sorted(slices.Values(append(gc.Tokens.KeepClaims, names...))))
		}
	}
	return errs
}
