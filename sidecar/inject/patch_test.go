package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var defaults = Defaults{Image: "ghcr.io/tokengate/tokengate:v1.0.0"}

// pod is an API's pod that asks for tokengate.
func pod(mut func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "orders-7d9f", Namespace: "shop",
			Labels:      map[string]string{LabelInject: "true", "app": "orders"},
			Annotations: map[string]string{AnnotationUpstreamPort: "8080", AnnotationConfig: "orders-tokengate"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "api", Image: "orders:1.4",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
	if mut != nil {
		mut(p)
	}
	return p
}

// apply applies a JSON Patch the way the API server does, with evanphx/json-patch.
func apply(t *testing.T, p *corev1.Pod, ops []Op) *corev1.Pod {
	t.Helper()
	doc, _ := json.Marshal(p)
	patch, _ := json.Marshal(ops)
	decoded, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decoded.Apply(doc)
	if err != nil {
		t.Fatalf("the patch does not apply: %v\n%s", err, patch)
	}
	var res corev1.Pod
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatal(err)
	}
	return &res
}

func TestPatchGolden(t *testing.T) {
	for name, p := range map[string]*corev1.Pod{
		"minimal": pod(nil),
		"every-annotation": pod(func(p *corev1.Pod) {
			p.Annotations[AnnotationImage] = "registry.example/tokengate:pinned"
			p.Annotations[AnnotationPort] = "8001"
			p.Annotations[AnnotationAdminPort] = "9091"
			p.Annotations[AnnotationLogLevel] = "debug"
			p.Annotations[AnnotationCPURequest] = "100m"
			p.Annotations[AnnotationMemoryRequest] = "48Mi"
			p.Annotations[AnnotationMemoryLimit] = "96Mi"
		}),
		"existing-init-containers-and-volumes": pod(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "orders:1.4"}}
			p.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}),
		"redis-secret": pod(func(p *corev1.Pod) {
			p.Annotations[AnnotationRedisSecret] = "orders-redis"
			p.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}),
	} {
		t.Run(name, func(t *testing.T) {
			ops, outcome, err := Patch(p, defaults)
			if err != nil || outcome != Injected {
				t.Fatalf("%v %v", outcome, err)
			}
			got := apply(t, p, ops)
			out, _ := json.MarshalIndent(map[string]any{"patch": ops, "initContainers": got.Spec.InitContainers, "volumes": got.Spec.Volumes, "annotations": got.Annotations}, "", "  ")
			golden := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, append(out, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(want) != string(append(out, '\n')) {
				t.Fatalf("the patch differs from %s (go test -update to accept):\n%s", golden, out)
			}

			// What the golden files show, checked for what it must be.
			sc := got.Spec.InitContainers[0]
			if sc.Name != ContainerName || sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Fatal("not a native sidecar first among the init containers")
			}
			s := sc.SecurityContext
			if !*s.ReadOnlyRootFilesystem || !*s.RunAsNonRoot || *s.AllowPrivilegeEscalation || len(s.Capabilities.Drop) != 1 || s.Capabilities.Drop[0] != "ALL" {
				t.Fatalf("security context %+v", s)
			}
			if sc.LivenessProbe.HTTPGet.Path == sc.ReadinessProbe.HTTPGet.Path || sc.StartupProbe == nil {
				t.Fatal("liveness and readiness must ask different endpoints, and a startup probe must hold the API back")
			}
			if sc.Resources.Requests.Cpu().IsZero() || sc.Resources.Requests.Memory().IsZero() || sc.Resources.Limits.Memory().IsZero() {
				t.Fatal("resources missing")
			}
			if got.Annotations[AnnotationStatus] != StatusInjected {
				t.Fatal("not marked injected")
			}
			// Injecting the injected pod again changes nothing.
			if ops, outcome, err := Patch(got, defaults); ops != nil || outcome != Skipped || err != nil {
				t.Fatalf("second injection: %v %v %v", ops, outcome, err)
			}
		})
	}
}

// The replay store's Redis credentials: a Secret mounted read-only where the sidecar's
// configuration reads them, named by the pod or by the injector's default, which a pod
// can also turn off.
func TestPatchRedisSecret(t *testing.T) {
	withDefault := defaults
	withDefault.RedisSecret = "shared-redis"
	for _, tc := range []struct {
		name   string
		d      Defaults
		mut    func(*corev1.Pod)
		secret string // "" for no mount
	}{
		{"none", defaults, nil, ""},
		{"the pod's", defaults, func(p *corev1.Pod) { p.Annotations[AnnotationRedisSecret] = "orders-redis" }, "orders-redis"},
		{"the injector's", withDefault, nil, "shared-redis"},
		{"the pod's over the injector's", withDefault, func(p *corev1.Pod) { p.Annotations[AnnotationRedisSecret] = " orders-redis " }, "orders-redis"},
		{"turned off by the pod", withDefault, func(p *corev1.Pod) { p.Annotations[AnnotationRedisSecret] = "" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pod(tc.mut)
			ops, outcome, err := Patch(p, tc.d)
			if err != nil || outcome != Injected {
				t.Fatalf("%v %v", outcome, err)
			}
			got := apply(t, p, ops)
			var secret string
			for _, v := range got.Spec.Volumes {
				if v.Name == RedisVolumeName {
					if v.Secret == nil || (v.Secret.Optional != nil && *v.Secret.Optional) {
						t.Fatalf("volume %s is not a required Secret: %+v", RedisVolumeName, v)
					}
					secret = v.Secret.SecretName
				}
			}
			mounted := false
			for _, m := range got.Spec.InitContainers[0].VolumeMounts {
				if m.Name == RedisVolumeName {
					mounted = m.MountPath == RedisMountDir && m.ReadOnly
				}
			}
			if secret != tc.secret || mounted != (tc.secret != "") {
				t.Fatalf("Secret %q mounted %v, want %q", secret, mounted, tc.secret)
			}
			for _, c := range got.Spec.Containers {
				for _, m := range c.VolumeMounts {
					if m.Name == RedisVolumeName {
						t.Fatalf("the API container %q mounts the Redis credentials", c.Name)
					}
				}
			}
		})
	}
}

func TestPatchSkips(t *testing.T) {
	for name, p := range map[string]*corev1.Pod{
		"no label":       pod(func(p *corev1.Pod) { delete(p.Labels, LabelInject) }),
		"label false":    pod(func(p *corev1.Pod) { p.Labels[LabelInject] = "false" }),
		"injected":       pod(func(p *corev1.Pod) { p.Annotations[AnnotationStatus] = StatusInjected }),
		"no annotations": pod(func(p *corev1.Pod) { p.Labels = nil; p.Annotations = nil }),
	} {
		if ops, outcome, err := Patch(p, defaults); ops != nil || outcome != Skipped || err != nil {
			t.Errorf("%s: %v %v %v", name, ops, outcome, err)
		}
	}
	// A pod without annotations gets the map created.
	p := pod(nil)
	ops, _, err := Patch(p, defaults)
	if err != nil {
		t.Fatal(err)
	}
	p.Annotations = map[string]string{AnnotationUpstreamPort: "8080", AnnotationConfig: "c"}
	if got := apply(t, p, ops); got.Annotations[AnnotationStatus] != StatusInjected {
		t.Fatal(got.Annotations)
	}
}

func TestPatchRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*corev1.Pod)
		want string
	}{
		{"label yes", func(p *corev1.Pod) { p.Labels[LabelInject] = "yes" }, `label tokengate.io/inject is "yes"`},
		{"no upstream port", func(p *corev1.Pod) { delete(p.Annotations, AnnotationUpstreamPort) }, "annotation tokengate.io/upstream-port is missing"},
		{"upstream port words", func(p *corev1.Pod) { p.Annotations[AnnotationUpstreamPort] = "http" }, `tokengate.io/upstream-port is "http": it must be a port number`},
		{"upstream port too big", func(p *corev1.Pod) { p.Annotations[AnnotationUpstreamPort] = "70000" }, "from 1 to 65535"},
		{"upstream on the sidecar's port", func(p *corev1.Pod) { p.Annotations[AnnotationUpstreamPort] = "8000" }, "a port the sidecar itself uses"},
		{"no config", func(p *corev1.Pod) { delete(p.Annotations, AnnotationConfig) }, "annotation tokengate.io/config is missing"},
		{"config not a name", func(p *corev1.Pod) { p.Annotations[AnnotationConfig] = "Orders_Config" }, `tokengate.io/config is "Orders_Config", not a ConfigMap name`},
		{"empty image", func(p *corev1.Pod) { p.Annotations[AnnotationImage] = " " }, "not an image reference"},
		{"log level", func(p *corev1.Pod) { p.Annotations[AnnotationLogLevel] = "loud" }, `tokengate.io/log-level is "loud"`},
		{"cpu", func(p *corev1.Pod) { p.Annotations[AnnotationCPURequest] = "lots" }, `tokengate.io/cpu-request is "lots"`},
		{"memory request above limit", func(p *corev1.Pod) { p.Annotations[AnnotationMemoryRequest] = "1Gi" }, "memory request 1Gi is above its limit 64Mi"},
		{"same ports", func(p *corev1.Pod) { p.Annotations[AnnotationPort] = "9090" }, "port and admin port are both 9090"},
		{"port taken by the API", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 9090 }, `container "api" uses port 9090`},
		{"container named tokengate", func(p *corev1.Pod) { p.Spec.Containers[0].Name = "tokengate" }, `a container is already named "tokengate"`},
		{"port named tokengate", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Name = "tokengate" }, `has a port named "tokengate"`},
		{"volume name taken", func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: VolumeName}} }, `a volume is already named "tokengate-config"`},
		{"redis secret not a name", func(p *corev1.Pod) { p.Annotations[AnnotationRedisSecret] = "Redis_Secret" }, `the Redis Secret "Redis_Secret" (annotation tokengate.io/redis-secret, or the injector's default) is not a Secret name`},
		{"redis volume name taken", func(p *corev1.Pod) {
			p.Annotations[AnnotationRedisSecret] = "orders-redis"
			p.Spec.Volumes = []corev1.Volume{{Name: RedisVolumeName}}
		}, `a volume is already named "tokengate-redis"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, outcome, err := Patch(pod(tc.mut), defaults)
			var r *Refusal
			if ops != nil || outcome != Refused || !errors.As(err, &r) {
				t.Fatalf("%v %v %v", ops, outcome, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%q lacks %q", err, tc.want)
			}
		})
	}
	t.Run("every problem at once", func(t *testing.T) {
		_, _, err := Patch(pod(func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationLogLevel: "x"} }), defaults)
		var r *Refusal
		if !errors.As(err, &r) || len(r.Problems) != 3 {
			t.Fatalf("%v", err)
		}
	})
}
