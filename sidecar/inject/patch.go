package inject

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Outcome is what the webhook did with a pod.
type Outcome string

const (
	Injected Outcome = "injected" // the sidecar, client tokens, or both were added
	Skipped  Outcome = "skipped"  // the pod did not ask, or has what it asked for already
	Refused  Outcome = "refused"  // the pod asked, wrongly: it must not start
)

// Refusal is a pod that asked for tokengate with a label or annotations that cannot
// work. Every problem is listed, each saying what to fix; the API server shows them to
// whoever created the pod.
type Refusal struct {
	// Asks is what the pod asked for, for the message: "the tokengate sidecar" when
	// empty.
	Asks     string
	Problems []string
}

func (r *Refusal) Error() string {
	asks := r.Asks
	if asks == "" {
		asks = askSidecar
	}
	return "tokengate: the pod asks for " + asks + " but cannot get it: " + strings.Join(r.Problems, "; ")
}

// What a pod asks for, as a Refusal says it.
const (
	askSidecar = "the tokengate sidecar"
	askTokens  = "client tokens"
)

// Op is one JSON Patch (RFC 6902) operation.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Patch decides what to do with a pod and returns the JSON Patch that gives it what it
// asks for: the sidecar (LabelInject), client tokens (LabelClientTokens), or both. It is
// a pure function of the pod and the defaults: the admission plumbing around it only
// decodes and encodes. A refusal is a *Refusal. A pod that has what it asked for
// already (the status annotation, the tokens' volume) is Skipped, so that the patched
// pod patched again, or a copy of it created anew, changes nothing.
func Patch(pod *corev1.Pod, d Defaults) ([]Op, Outcome, error) {
	d = d.withDefaults()
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	wantSidecar := optedIn(pod, LabelInject, "inject the sidecar", bad)
	wantTokens := optedIn(pod, LabelClientTokens, "mount client tokens", bad)
	var asks []string // what the labels ask for, even when a value is wrong
	if v := pod.Labels[LabelInject]; v != "" && v != "false" {
		asks = append(asks, askSidecar)
	}
	if v := pod.Labels[LabelClientTokens]; v != "" && v != "false" {
		asks = append(asks, askTokens)
	}
	refuse := func() ([]Op, Outcome, error) {
		return nil, Refused, &Refusal{Asks: strings.Join(asks, " and "), Problems: problems}
	}
	if len(problems) > 0 {
		return refuse()
	}
	if !wantSidecar && !wantTokens {
		return nil, Skipped, nil
	}
	if !wantTokens && pod.Labels[LabelClientTokens] == "" {
		// The webhook sees a pod that is not labelled for tokens only when it asks for
		// the sidecar: tell its owner, who would otherwise learn only where it is not
		// seen, by the missing file.
		for _, key := range []string{AnnotationClientTokenAudiences, AnnotationClientTokenExpirationSeconds, AnnotationClientTokenContainers} {
			if _, ok := pod.Annotations[key]; ok {
				bad("annotation %s needs the label %s: \"true\" (without it, a pod without the sidecar is never seen by the webhook and gets no tokens)", key, LabelClientTokens)
			}
		}
	}

	var sc *sidecarPlan
	if wantSidecar && pod.Annotations[AnnotationStatus] != StatusInjected {
		sc = planSidecar(pod, d, bad)
	}
	var tokens *tokensPlan
	if wantTokens {
		tokens = planTokens(pod, bad)
	}
	if len(problems) > 0 {
		return refuse()
	}
	if sc == nil && tokens == nil {
		return nil, Skipped, nil
	}

	var ops []Op
	mount := func(kind string, i int, c corev1.Container) {
		m := corev1.VolumeMount{Name: ClientTokenVolumeName, MountPath: ClientTokenDir, ReadOnly: true}
		if len(c.VolumeMounts) == 0 {
			ops = append(ops, Op{"add", fmt.Sprintf("/spec/%s/%d/volumeMounts", kind, i), []corev1.VolumeMount{m}})
		} else {
			ops = append(ops, Op{"add", fmt.Sprintf("/spec/%s/%d/volumeMounts/-", kind, i), m})
		}
	}
	var vols []corev1.Volume
	if tokens != nil {
		// The init containers' mounts come before the sidecar moves them one place on.
		for _, i := range tokens.inits {
			mount("initContainers", i, pod.Spec.InitContainers[i])
		}
		for _, i := range tokens.containers {
			mount("containers", i, pod.Spec.Containers[i])
		}
	}
	if sc != nil {
		// First among the init containers: as a native sidecar with a startup probe, it
		// is serving before the next init container, and the API, start.
		if len(pod.Spec.InitContainers) == 0 {
			ops = append(ops, Op{"add", "/spec/initContainers", []corev1.Container{sc.container}})
		} else {
			ops = append(ops, Op{"add", "/spec/initContainers/0", sc.container})
		}
		vols = append(vols, sc.volumes...)
	}
	if tokens != nil {
		vols = append(vols, tokens.volume)
	}
	if len(pod.Spec.Volumes) == 0 {
		ops = append(ops, Op{"add", "/spec/volumes", vols})
	} else {
		for _, vol := range vols {
			ops = append(ops, Op{"add", "/spec/volumes/-", vol})
		}
	}
	if sc != nil {
		if pod.Annotations == nil {
			ops = append(ops, Op{"add", "/metadata/annotations", map[string]string{AnnotationStatus: StatusInjected}})
		} else {
			ops = append(ops, Op{"add", "/metadata/annotations/" + escapePointer(AnnotationStatus), StatusInjected})
		}
	}
	return ops, Injected, nil
}

// optedIn reads a pod's opt-in label: "true" is in; absent and "false" are out; any
// other value is a problem, because a pod that tried to ask must not start without
// what it asked for.
func optedIn(pod *corev1.Pod, label, what string, bad func(string, ...any)) bool {
	switch v := pod.Labels[label]; v {
	case "true":
		return true
	case "", "false":
		return false
	default:
		bad("label %s is %q: set it to \"true\" to %s or \"false\" not to", label, v, what)
		return false
	}
}

// sidecarPlan is what the webhook adds for the sidecar: the container and its volumes.
type sidecarPlan struct {
	container corev1.Container
	volumes   []corev1.Volume
}

// planSidecar reads the sidecar's annotations; it reports every problem to bad and
// returns nil when there is one.
func planSidecar(pod *corev1.Pod, d Defaults, bad func(string, ...any)) *sidecarPlan {
	ann := pod.Annotations
	problems := 0
	count := func(format string, args ...any) { problems++; bad(format, args...) }
	port := func(key string, def int32, required bool) int32 {
		v, ok := ann[key]
		if !ok {
			if required {
				count("annotation %s is missing: set it to the port your API listens on (on 127.0.0.1)", key)
			}
			return def
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 65535 {
			count("annotation %s is %q: it must be a port number from 1 to 65535", key, v)
			return def
		}
		return int32(n)
	}
	upstream := port(AnnotationUpstreamPort, 0, true)
	listen := port(AnnotationPort, d.Port, false)
	admin := port(AnnotationAdminPort, d.AdminPort, false)
	if listen == admin {
		count("the sidecar's port and admin port are both %d: give %s or %s another value", listen, AnnotationPort, AnnotationAdminPort)
	}
	if upstream != 0 && (upstream == listen || upstream == admin) {
		count("annotation %s is %d, a port the sidecar itself uses: move the API, or set %s and %s", AnnotationUpstreamPort, upstream, AnnotationPort, AnnotationAdminPort)
	}

	config, ok := ann[AnnotationConfig]
	switch {
	case !ok:
		count("annotation %s is missing: set it to the name of the ConfigMap that holds %s", AnnotationConfig, ConfigFileKey)
	default:
		if errs := validation.IsDNS1123Subdomain(config); len(errs) > 0 {
			count("annotation %s is %q, not a ConfigMap name: %s", AnnotationConfig, config, strings.Join(errs, "; "))
		}
	}
	redisSecret := d.RedisSecret
	if v, ok := ann[AnnotationRedisSecret]; ok {
		redisSecret = strings.TrimSpace(v)
	}
	if redisSecret != "" {
		if errs := validation.IsDNS1123Subdomain(redisSecret); len(errs) > 0 {
			count("the Redis Secret %q (annotation %s, or the injector's default) is not a Secret name: %s", redisSecret, AnnotationRedisSecret, strings.Join(errs, "; "))
		}
	}
	image := d.Image
	if v, ok := ann[AnnotationImage]; ok {
		image = strings.TrimSpace(v)
	}
	if image == "" || strings.ContainsAny(image, " \t\n") {
		count("the sidecar image %q is not an image reference: set %s, or the injector's default", image, AnnotationImage)
	}
	level := d.LogLevel
	if v, ok := ann[AnnotationLogLevel]; ok {
		level = v
	}
	switch level {
	case "debug", "info", "warn", "error":
	default:
		count("annotation %s is %q: use debug, info, warn or error", AnnotationLogLevel, level)
	}
	quantity := func(key, def string) resource.Quantity {
		v, ok := ann[key]
		if !ok {
			v = def
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() <= 0 {
			count("annotation %s is %q: it must be a positive Kubernetes quantity, such as 50m or 64Mi", key, v)
			return resource.Quantity{}
		}
		return q
	}
	cpu := quantity(AnnotationCPURequest, d.CPURequest)
	memReq := quantity(AnnotationMemoryRequest, d.MemoryRequest)
	memLim := quantity(AnnotationMemoryLimit, d.MemoryLimit)
	if !memLim.IsZero() && !memReq.IsZero() && memReq.Cmp(memLim) > 0 {
		count("the sidecar's memory request %s is above its limit %s", memReq.String(), memLim.String())
	}

	// What is already in the pod must leave room for the sidecar.
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		if c.Name == ContainerName {
			count("a container is already named %q: rename it, or annotate the pod %s: %s if the sidecar is there", ContainerName, AnnotationStatus, StatusInjected)
		}
		for _, p := range c.Ports {
			if p.ContainerPort == listen || p.ContainerPort == admin {
				count("container %q uses port %d, which the sidecar needs: set %s and %s to free ports", c.Name, p.ContainerPort, AnnotationPort, AnnotationAdminPort)
			}
			if p.Name == PortName || p.Name == AdminPortName {
				count("container %q has a port named %q, which the sidecar's port takes: rename it", c.Name, p.Name)
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == VolumeName || (redisSecret != "" && v.Name == RedisVolumeName) {
			count("a volume is already named %q: rename it", v.Name)
		}
	}
	if problems > 0 {
		return nil
	}

	plan := &sidecarPlan{container: sidecar(d, image, level, upstream, listen, admin, cpu, memReq, memLim)}
	plan.volumes = []corev1.Volume{{Name: VolumeName, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: config},
	}}}}
	if redisSecret != "" {
		// Not optional: a pod that names a Secret it does not have waits for it (its
		// events say which), instead of a sidecar that starts without credentials.
		plan.volumes = append(plan.volumes, corev1.Volume{Name: RedisVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: redisSecret,
		}}})
		plan.container.VolumeMounts = append(plan.container.VolumeMounts, corev1.VolumeMount{Name: RedisVolumeName, MountPath: RedisMountDir, ReadOnly: true})
	}
	return plan
}

// sidecar is the container the webhook adds.
func sidecar(d Defaults, image, level string, upstream, listen, admin int32, cpu, memReq, memLim resource.Quantity) corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString(AdminPortName)}},
			PeriodSeconds:    period,
			TimeoutSeconds:   2,
			FailureThreshold: failures,
		}
	}
	f := false
	t := true
	user := d.RunAsUser
	return corev1.Container{
		Name:          ContainerName,
		Image:         image,
		RestartPolicy: &always,
		Args: []string{
			"sidecar",
			"--config=" + ConfigMountDir + "/" + ConfigFileKey,
			fmt.Sprintf("--listen=:%d", listen),
			fmt.Sprintf("--admin=:%d", admin),
			fmt.Sprintf("--upstream=http://127.0.0.1:%d", upstream),
			"--log-level=" + level,
		},
		Env: []corev1.EnvVar{{
			// The Go runtime keeps the heap under the container's memory limit.
			Name:      "GOMEMLIMIT",
			ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}},
		}},
		Ports: []corev1.ContainerPort{
			{Name: PortName, ContainerPort: listen, Protocol: corev1.ProtocolTCP},
			{Name: AdminPortName, ContainerPort: admin, Protocol: corev1.ProtocolTCP},
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: memReq},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: memLim},
		},
		// Liveness and readiness ask different questions: is the process alive
		// (/healthz), and should it get traffic (/readyz: configuration and keys loaded).
		StartupProbe:   probe("/readyz", 1, 120),
		LivenessProbe:  probe("/healthz", 10, 3),
		ReadinessProbe: probe("/readyz", 5, 2),
		VolumeMounts:   []corev1.VolumeMount{{Name: VolumeName, MountPath: ConfigMountDir, ReadOnly: true}},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             &t,
			RunAsUser:                &user,
			ReadOnlyRootFilesystem:   &t,
			AllowPrivilegeEscalation: &f,
			Privileged:               &f,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// escapePointer escapes a JSON Pointer token (RFC 6901): "~" as "~0", "/" as "~1".
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
