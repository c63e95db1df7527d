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
	Injected Outcome = "injected" // the sidecar was added
	Skipped  Outcome = "skipped"  // the pod did not ask, or has it already
	Refused  Outcome = "refused"  // the pod asked, wrongly: it must not start
)

// Refusal is a pod that asked for tokengate with annotations that cannot work. Every
// problem is listed, each saying what to fix; the API server shows them to whoever
// created the pod.
type Refusal struct {
	Problems []string
}

func (r *Refusal) Error() string {
	return "tokengate: the pod asks for the tokengate sidecar but cannot get it: " + strings.Join(r.Problems, "; ")
}

// Op is one JSON Patch (RFC 6902) operation.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Patch decides what to do with a pod and returns the JSON Patch that adds the sidecar.
// It is a pure function of the pod and the defaults: the admission plumbing around it
// only decodes and encodes. A refusal is a *Refusal.
func Patch(pod *corev1.Pod, d Defaults) ([]Op, Outcome, error) {
	d = d.withDefaults()
	switch v := pod.Labels[LabelInject]; v {
	case "true":
	case "", "false":
		return nil, Skipped, nil
	default:
		return nil, Refused, &Refusal{Problems: []string{fmt.Sprintf("label %s is %q: set it to \"true\" to inject the sidecar or \"false\" not to", LabelInject, v)}}
	}
	if pod.Annotations[AnnotationStatus] == StatusInjected {
		return nil, Skipped, nil
	}

	ann := pod.Annotations
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	port := func(key string, def int32, required bool) int32 {
		v, ok := ann[key]
		if !ok {
			if required {
				bad("annotation %s is missing: set it to the port your API listens on (on 127.0.0.1)", key)
			}
			return def
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 65535 {
			bad("annotation %s is %q: it must be a port number from 1 to 65535", key, v)
			return def
		}
		return int32(n)
	}
	upstream := port(AnnotationUpstreamPort, 0, true)
	listen := port(AnnotationPort, d.Port, false)
	admin := port(AnnotationAdminPort, d.AdminPort, false)
	if listen == admin {
		bad("the sidecar's port and admin port are both %d: give %s or %s another value", listen, AnnotationPort, AnnotationAdminPort)
	}
	if upstream != 0 && (upstream == listen || upstream == admin) {
		bad("annotation %s is %d, a port the sidecar itself uses: move the API, or set %s and %s", AnnotationUpstreamPort, upstream, AnnotationPort, AnnotationAdminPort)
	}

	config, ok := ann[AnnotationConfig]
	switch {
	case !ok:
		bad("annotation %s is missing: set it to the name of the ConfigMap that holds %s", AnnotationConfig, ConfigFileKey)
	default:
		if errs := validation.IsDNS1123Subdomain(config); len(errs) > 0 {
			bad("annotation %s is %q, not a ConfigMap name: %s", AnnotationConfig, config, strings.Join(errs, "; "))
		}
	}
	redisSecret := d.RedisSecret
	if v, ok := ann[AnnotationRedisSecret]; ok {
		redisSecret = strings.TrimSpace(v)
	}
	if redisSecret != "" {
		if errs := validation.IsDNS1123Subdomain(redisSecret); len(errs) > 0 {
			bad("the Redis Secret %q (annotation %s, or the injector's default) is not a Secret name: %s", redisSecret, AnnotationRedisSecret, strings.Join(errs, "; "))
		}
	}
	image := d.Image
	if v, ok := ann[AnnotationImage]; ok {
		image = strings.TrimSpace(v)
	}
	if image == "" || strings.ContainsAny(image, " \t\n") {
		bad("the sidecar image %q is not an image reference: set %s, or the injector's default", image, AnnotationImage)
	}
	level := d.LogLevel
	if v, ok := ann[AnnotationLogLevel]; ok {
		level = v
	}
	switch level {
	case "debug", "info", "warn", "error":
	default:
		bad("annotation %s is %q: use debug, info, warn or error", AnnotationLogLevel, level)
	}
	quantity := func(key, def string) resource.Quantity {
		v, ok := ann[key]
		if !ok {
			v = def
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() <= 0 {
			bad("annotation %s is %q: it must be a positive Kubernetes quantity, such as 50m or 64Mi", key, v)
			return resource.Quantity{}
		}
		return q
	}
	cpu := quantity(AnnotationCPURequest, d.CPURequest)
	memReq := quantity(AnnotationMemoryRequest, d.MemoryRequest)
	memLim := quantity(AnnotationMemoryLimit, d.MemoryLimit)
	if !memLim.IsZero() && !memReq.IsZero() && memReq.Cmp(memLim) > 0 {
		bad("the sidecar's memory request %s is above its limit %s", memReq.String(), memLim.String())
	}

	// What is already in the pod must leave room for the sidecar.
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		if c.Name == ContainerName {
			bad("a container is already named %q: rename it, or annotate the pod %s: %s if the sidecar is there", ContainerName, AnnotationStatus, StatusInjected)
		}
		for _, p := range c.Ports {
			if p.ContainerPort == listen || p.ContainerPort == admin {
				bad("container %q uses port %d, which the sidecar needs: set %s and %s to free ports", c.Name, p.ContainerPort, AnnotationPort, AnnotationAdminPort)
			}
			if p.Name == PortName || p.Name == AdminPortName {
				bad("container %q has a port named %q, which the sidecar's port takes: rename it", c.Name, p.Name)
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == VolumeName || (redisSecret != "" && v.Name == RedisVolumeName) {
			bad("a volume is already named %q: rename it", v.Name)
		}
	}
	if len(problems) > 0 {
		return nil, Refused, &Refusal{Problems: problems}
	}

	c := sidecar(d, image, level, upstream, listen, admin, cpu, memReq, memLim)
	vols := []corev1.Volume{{Name: VolumeName, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: config},
	}}}}
	if redisSecret != "" {
		// Not optional: a pod that names a Secret it does not have waits for it (its
		// events say which), instead of a sidecar that starts without credentials.
		vols = append(vols, corev1.Volume{Name: RedisVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: redisSecret,
		}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: RedisVolumeName, MountPath: RedisMountDir, ReadOnly: true})
	}

	var ops []Op
	// First among the init containers: as a native sidecar with a startup probe, it is
	// serving before the next init container, and the API, start.
	if len(pod.Spec.InitContainers) == 0 {
		ops = append(ops, Op{"add", "/spec/initContainers", []corev1.Container{c}})
	} else {
		ops = append(ops, Op{"add", "/spec/initContainers/0", c})
	}
	if len(pod.Spec.Volumes) == 0 {
		ops = append(ops, Op{"add", "/spec/volumes", vols})
	} else {
		for _, vol := range vols {
			ops = append(ops, Op{"add", "/spec/volumes/-", vol})
		}
	}
	if pod.Annotations == nil {
		ops = append(ops, Op{"add", "/metadata/annotations", map[string]string{AnnotationStatus: StatusInjected}})
	} else {
		ops = append(ops, Op{"add", "/metadata/annotations/" + escapePointer(AnnotationStatus), StatusInjected})
	}
	return ops, Injected, nil
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
