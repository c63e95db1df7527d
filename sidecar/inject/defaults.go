package inject

import "time"

// Every default of the injector and of the sidecar it injects is defined once, here.
// The flags of `tokengate inject` take their defaults from these constants, and Patch
// fills a zero Defaults field from them. The Helm chart cannot import Go: its
// values.yaml repeats the ones it passes to `tokengate inject`, and a test of the chart
// (charts/tokengate, TestDefaultsAreTheInjectors) renders it and checks that what
// reaches the injector's arguments equals these constants, so that a default changed
// on one side only fails a test instead of making the chart and the binary disagree.

// DefaultImageRepository is the repository of the tokengate image. The injector runs
// it, and it is the sidecar's image unless a pod's AnnotationImage says otherwise; its
// tag is the release's version.
const DefaultImageRepository = "ghcr.io/tokengate/tokengate"

// Defaults of the injected sidecar: what it gets when neither the pod's annotations nor
// the injector's flags say otherwise.
const (
	// DefaultSidecarPort is the port clients (the Service) connect to, named PortName
	// (AnnotationPort).
	DefaultSidecarPort = 8000
	// DefaultSidecarAdminPort is the port of /metrics, /healthz and /readyz, named
	// AdminPortName (AnnotationAdminPort).
	DefaultSidecarAdminPort = 9090
	// DefaultSidecarLogLevel is the sidecar's log level (AnnotationLogLevel).
	DefaultSidecarLogLevel = "info"
	// DefaultSidecarCPURequest is the sidecar's CPU request (AnnotationCPURequest).
	DefaultSidecarCPURequest = "50m"
	// DefaultSidecarMemoryRequest is the sidecar's memory request
	// (AnnotationMemoryRequest).
	DefaultSidecarMemoryRequest = "32Mi"
	// DefaultSidecarMemoryLimit is the sidecar's memory limit, which is also its
	// GOMEMLIMIT (AnnotationMemoryLimit).
	DefaultSidecarMemoryLimit = "64Mi"
	// DefaultSidecarRunAsUser is the sidecar's user id: the image's "nonroot" user
	// (distroless's 65532, which tools/image creates). The chart runs the injector,
	// the same image, as the same user.
	DefaultSidecarRunAsUser = 65532
)

// DefaultClientTokenExpirationSeconds is the lifetime of a client token
// (AnnotationClientTokenExpirationSeconds): an hour, Kubernetes' own default for a
// projected token. The kubelet replaces the file at 80 % of it, or after 24 hours,
// whichever comes first.
const DefaultClientTokenExpirationSeconds = 3600

// Defaults of the injector itself: its flags, and Server's zero values.
const (
	// DefaultListenAddr is the address of the webhook (TLS).
	DefaultListenAddr = ":8443"
	// DefaultAdminAddr is the address of the injector's /metrics, /healthz and /readyz.
	DefaultAdminAddr = ":9090"
	// DefaultCertFile and DefaultKeyFile are the serving certificate and its key: where
	// the chart mounts its TLS Secret.
	DefaultCertFile = "/etc/tokengate/tls/tls.crt"
	DefaultKeyFile  = "/etc/tokengate/tls/tls.key"
	// DefaultLogLevel is the injector's log level.
	DefaultLogLevel = "info"
	// DefaultDrainTimeout bounds the shutdown: requests in flight get this long to
	// finish. It must stay below the pod's termination grace period (30 s unless the
	// chart says otherwise), or the kubelet kills the injector mid-drain.
	DefaultDrainTimeout = 10 * time.Second
)

// MutatePath is the path the webhook answers on; the chart's
// MutatingWebhookConfiguration sends the API server there.
const MutatePath = "/mutate"

// Defaults are what the sidecar gets when a pod's annotations do not say otherwise. A
// zero field takes its Default* constant.
type Defaults struct {
	Image         string // required
	Port          int32  // [DefaultSidecarPort]
	AdminPort     int32  // [DefaultSidecarAdminPort]
	LogLevel      string // [DefaultSidecarLogLevel]
	CPURequest    string // [DefaultSidecarCPURequest]
	MemoryRequest string // [DefaultSidecarMemoryRequest]
	MemoryLimit   string // [DefaultSidecarMemoryLimit]
	RunAsUser     int64  // [DefaultSidecarRunAsUser]
	// RedisSecret is the Secret of AnnotationRedisSecret for pods that do not name
	// one: the same name in every namespace with opted-in pods. Empty: none.
	RedisSecret string
}

func (d Defaults) withDefaults() Defaults {
	if d.Port == 0 {
		d.Port = DefaultSidecarPort
	}
	if d.AdminPort == 0 {
		d.AdminPort = DefaultSidecarAdminPort
	}
	if d.LogLevel == "" {
		d.LogLevel = DefaultSidecarLogLevel
	}
	if d.CPURequest == "" {
		d.CPURequest = DefaultSidecarCPURequest
	}
	if d.MemoryRequest == "" {
		d.MemoryRequest = DefaultSidecarMemoryRequest
	}
	if d.MemoryLimit == "" {
		d.MemoryLimit = DefaultSidecarMemoryLimit
	}
	if d.RunAsUser == 0 {
		d.RunAsUser = DefaultSidecarRunAsUser
	}
	return d
}
