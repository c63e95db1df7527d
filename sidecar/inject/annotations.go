package inject

// The label and annotations a pod uses to ask for tokengate, in one place. A pod opts in
// with the label (a label, so that the webhook's objectSelector keeps every other pod
// away from it) and says how with annotations.
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
