package inject

// The labels and annotations a pod uses to ask for tokengate, in one place. A pod opts in
// with a label (a label, so that the webhook's objectSelector keeps every other pod away
// from it) and says how with annotations. An API's pod asks for the sidecar
// (LabelInject); a pod that calls such APIs asks for ServiceAccount tokens
// (LabelClientTokens); a pod may ask for both.
const (
	// LabelInject opts a pod in: "true". "false" opts out; any other value is refused,
	// because a pod that tried to ask for protection must not start without it.
	LabelInject = "tokengate.io/inject"

	// AnnotationUpstreamPort is the port the pod's API listens on, on 127.0.0.1
	// (required). The sidecar forwards allowed requests there.
	AnnotationUpstreamPort = "tokengate.io/upstream-port"

	// AnnotationConfig names the ConfigMap, in the pod's namespace, that holds the
	// configuration file under the key "tokengate.yaml" (required).
	AnnotationConfig = "tokengate.io/config"

	// AnnotationImage overrides the sidecar image.
	AnnotationImage = "tokengate.io/image"

	// AnnotationPort is the port clients (the Service) connect to
	// [DefaultSidecarPort].
	AnnotationPort = "tokengate.io/port"

	// AnnotationAdminPort is the port of /metrics, /healthz and /readyz
	// [DefaultSidecarAdminPort].
	AnnotationAdminPort = "tokengate.io/admin-port"

	// AnnotationLogLevel is the sidecar's log level: debug, info, warn or error
	// [DefaultSidecarLogLevel].
	AnnotationLogLevel = "tokengate.io/log-level"

	// AnnotationCPURequest, AnnotationMemoryRequest and AnnotationMemoryLimit override
	// the sidecar's resources (Kubernetes quantities such as "50m" or "64Mi")
	// [DefaultSidecarCPURequest, DefaultSidecarMemoryRequest, DefaultSidecarMemoryLimit].
	AnnotationCPURequest    = "tokengate.io/cpu-request"
	AnnotationMemoryRequest = "tokengate.io/memory-request"
	AnnotationMemoryLimit   = "tokengate.io/memory-limit"

	// AnnotationRedisSecret names a Secret, in the pod's namespace, that the webhook
	// mounts read-only into the sidecar at RedisMountDir: the credentials of the replay
	// store's Redis, which the sidecar's configuration reads from there
	// (replay.redis.usernameFile: /var/run/tokengate/redis/username, passwordFile:
	// /var/run/tokengate/redis/password; one file per key of the Secret). Empty mounts
	// none [Defaults.RedisSecret, none unless the injector says].
	AnnotationRedisSecret = "tokengate.io/redis-secret"

	// AnnotationStatus marks an injected pod: "injected". The webhook leaves a pod so
	// marked alone, so that injecting twice cannot happen.
	AnnotationStatus = "tokengate.io/status"
	StatusInjected   = "injected"
)

// The label and annotations of a client pod: one that calls APIs guarded by tokengate
// with projected ServiceAccount tokens, one per audience, that the kubelet requests,
// writes and rotates. The webhook adds the projected volume and its mounts; it adds no
// container, so a client pod needs nothing else of tokengate.
const (
	// LabelClientTokens opts a pod in: "true". "false" opts out; any other value is
	// refused. Without it the webhook never sees a pod that is not also labelled
	// LabelInject, so the annotations below would do nothing: where the webhook does
	// see them without the label, it refuses the pod.
	LabelClientTokens = "tokengate.io/client-tokens"

	// AnnotationClientTokenAudiences lists the audiences to get a token for,
	// separated by commas (required with LabelClientTokens): each the name of an API,
	// as its tokengate configuration lists it under the issuer's audiences. At most
	// MaxClientTokenAudiences, each at most MaxClientTokenAudienceLength characters of
	// printable ASCII without spaces or commas, no two alike, and no two with the same
	// file name (TokenFileName). Spaces around the commas are ignored.
	AnnotationClientTokenAudiences = "tokengate.io/client-token-audiences"

	// AnnotationClientTokenExpirationSeconds is the lifetime the kubelet asks for, in
	// seconds: from MinClientTokenExpirationSeconds to MaxClientTokenExpirationSeconds,
	// Kubernetes' own bounds [DefaultClientTokenExpirationSeconds]. The API server may
	// shorten it (--service-account-max-token-expiration).
	AnnotationClientTokenExpirationSeconds = "tokengate.io/client-token-expiration-seconds"

	// AnnotationClientTokenContainers names the containers (or init containers) that
	// mount the tokens, separated by commas [every container and init container the
	// pod has when the webhook sees it; never the tokengate sidecar, which it is
	// refused to name].
	AnnotationClientTokenContainers = "tokengate.io/client-token-containers"
)

// Names and bounds of client tokens.
const (
	// ClientTokenVolumeName is the projected volume of the tokens. A pod that has it
	// already has its tokens: the webhook adds nothing (when it holds what the
	// annotations ask for) or refuses the pod (when it does not).
	ClientTokenVolumeName = "tokengate-client-tokens"
	// ClientTokenDir is where every chosen container mounts the volume, read-only:
	// the token for an audience is the file TokenFileName(audience) in it
	// (TokenPath).
	ClientTokenDir = "/var/run/secrets/tokengate.io/tokens"

	// MaxClientTokenAudiences bounds the audiences of a pod.
	MaxClientTokenAudiences = 16
	// MaxClientTokenAudienceLength bounds an audience, in bytes, so that its file name
	// fits every file system's 255.
	MaxClientTokenAudienceLength = 253
	// MinClientTokenExpirationSeconds and MaxClientTokenExpirationSeconds are the
	// bounds Kubernetes' validation puts on a projected token's expirationSeconds.
	MinClientTokenExpirationSeconds = 600
	MaxClientTokenExpirationSeconds = 1 << 32
)

// Names the webhook adds to a pod.
const (
	ContainerName  = "tokengate"
	PortName       = "tokengate"
	AdminPortName  = "tokengate-admin"
	VolumeName     = "tokengate-config"
	ConfigMountDir = "/etc/tokengate"
	ConfigFileKey  = "tokengate.yaml"

	// RedisVolumeName is the volume of AnnotationRedisSecret, mounted at RedisMountDir.
	RedisVolumeName = "tokengate-redis"
	RedisMountDir   = "/var/run/tokengate/redis"
)
