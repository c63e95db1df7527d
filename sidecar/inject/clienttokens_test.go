package inject

import (
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// clientPod is a pod that calls APIs guarded by tokengate and asks for their tokens: no
// sidecar of its own.
func clientPod(mut func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "billing-5c7d", Namespace: "payments",
			Labels:      map[string]string{LabelClientTokens: "true", "app": "billing"},
			Annotations: map[string]string{AnnotationClientTokenAudiences: "refunds"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "billing",
			InitContainers:     []corev1.Container{{Name: "wait", Image: "busybox:1.37"}},
			Containers: []corev1.Container{
				{Name: "app", Image: "billing:2.1", VolumeMounts: []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}},
				{Name: "worker", Image: "billing:2.1"},
			},
			Volumes: []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
	if mut != nil {
		mut(p)
	}
	return p
}

// tokenMounts lists, by container name, where each container mounts the tokens'
// volume (read-only, or "writable!").
func tokenMounts(p *corev1.Pod) map[string]string {
	got := map[string]string{}
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		for _, m := range c.VolumeMounts {
			if m.Name == ClientTokenVolumeName {
				got[c.Name] = m.MountPath
				if !m.ReadOnly {
					got[c.Name] = "writable!"
				}
			}
		}
	}
	return got
}

// tokenSources is the stored volume's tokens, as audience → path and lifetime.
func tokenSources(t *testing.T, p *corev1.Pod) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, v := range p.Spec.Volumes {
		if v.Name != ClientTokenVolumeName {
			continue
		}
		if v.Projected == nil {
			t.Fatalf("volume %s is not projected: %+v", v.Name, v)
		}
		for _, s := range v.Projected.Sources {
			a := s.ServiceAccountToken
			if a == nil || a.ExpirationSeconds == nil {
				t.Fatalf("a source that is not a token with a lifetime: %+v", s)
			}
			got[a.Audience] = a.Path + " " + strconv.FormatInt(*a.ExpirationSeconds, 10)
		}
	}
	return got
}

func TestClientTokensGolden(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		sources map[string]string
		mounts  map[string]string
	}{
		{
			"client-tokens",
			clientPod(func(p *corev1.Pod) {
				p.Annotations[AnnotationClientTokenAudiences] = "refunds, https://orders.example.com"
				p.Annotations[AnnotationClientTokenExpirationSeconds] = "7200"
			}),
			map[string]string{"refunds": "refunds 7200", "https://orders.example.com": "https___orders.example.com 7200"},
			map[string]string{"wait": ClientTokenDir, "app": ClientTokenDir, "worker": ClientTokenDir},
		},
		{
			"client-tokens-named-containers",
			clientPod(func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenContainers] = "worker, wait" }),
			map[string]string{"refunds": "refunds 3600"},
			map[string]string{"wait": ClientTokenDir, "worker": ClientTokenDir},
		},
		{
			// An API that is also a client: the sidecar and tokens in one patch, the
			// init container's mount made before the sidecar moves it one place on.
			"sidecar-and-client-tokens",
			pod(func(p *corev1.Pod) {
				p.Labels[LabelClientTokens] = "true"
				p.Annotations[AnnotationClientTokenAudiences] = "refunds"
				p.Spec.ServiceAccountName = "orders"
				p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "orders:1.4"}}
			}),
			map[string]string{"refunds": "refunds 3600"},
			map[string]string{"migrate": ClientTokenDir, "api": ClientTokenDir},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, outcome, err := Patch(tc.pod, defaults)
			if err != nil || outcome != Injected {
				t.Fatalf("%v %v", outcome, err)
			}
			got := apply(t, tc.pod, ops)
			out, _ := json.MarshalIndent(map[string]any{"patch": ops, "initContainers": got.Spec.InitContainers, "containers": got.Spec.Containers, "volumes": got.Spec.Volumes, "annotations": got.Annotations}, "", "  ")
			golden := filepath.Join("testdata", tc.name+".golden.json")
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
			if s := tokenSources(t, got); !mapsEqual(s, tc.sources) {
				t.Errorf("tokens %v, want %v", s, tc.sources)
			}
			if m := tokenMounts(got); !mapsEqual(m, tc.mounts) {
				t.Errorf("mounts %v, want %v", m, tc.mounts)
			}
			for i, v := range got.Spec.Volumes {
				if v.Name == "cache" && i != 0 || slices.IndexFunc(got.Spec.Volumes, func(w corev1.Volume) bool { return w.Name == v.Name }) != i {
					t.Errorf("volumes %v: the pod's own moved, or one is there twice", got.Spec.Volumes)
				}
			}
			if sidecar := tc.pod.Labels[LabelInject] == "true"; sidecar != (got.Annotations[AnnotationStatus] == StatusInjected) ||
				sidecar != (len(got.Spec.InitContainers) > 0 && got.Spec.InitContainers[0].Name == ContainerName) {
				t.Error("the sidecar is added to the pods that ask for it, and to no other")
			}

			// Patching the patched pod again changes nothing, and neither does creating
			// a copy of it as the API server stored it (with the volume's mode
			// defaulted).
			if ops, outcome, err := Patch(got, defaults); ops != nil || outcome != Skipped || err != nil {
				t.Fatalf("second patch: %v %v %v", ops, outcome, err)
			}
			stored := got.DeepCopy()
			for _, v := range stored.Spec.Volumes {
				if v.Projected != nil {
					mode := int32(0o644)
					v.Projected.DefaultMode = &mode
				}
			}
			if ops, outcome, err := Patch(stored, defaults); ops != nil || outcome != Skipped || err != nil {
				t.Fatalf("a copy of the stored pod: %v %v %v", ops, outcome, err)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// A pod whose tokens' volume is not what its annotations ask for is refused: the
// webhook neither adds a second nor keeps one it did not make.
func TestClientTokensChangedOrForeignVolume(t *testing.T) {
	p := clientPod(nil)
	ops, _, _ := Patch(p, defaults)
	patched := apply(t, p, ops)
	patched.Annotations[AnnotationClientTokenAudiences] = "refunds,orders"
	for name, p := range map[string]*corev1.Pod{
		"annotations changed since": patched,
		"a volume of the pod's own": clientPod(func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: ClientTokenVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		}),
	} {
		t.Run(name, func(t *testing.T) {
			ops, outcome, err := Patch(p, defaults)
			if ops != nil || outcome != Refused || err == nil || !strings.Contains(err.Error(), `a volume is already named "tokengate-client-tokens", and it does not hold the tokens`) {
				t.Fatalf("%v %v %v", ops, outcome, err)
			}
		})
	}
}

func TestClientTokensSkips(t *testing.T) {
	for name, p := range map[string]*corev1.Pod{
		// Only a label brings a pod to the webhook; without it the annotations are
		// inert, and documented so.
		"annotations without any label": clientPod(func(p *corev1.Pod) { delete(p.Labels, LabelClientTokens) }),
		"label false":                   clientPod(func(p *corev1.Pod) { p.Labels[LabelClientTokens] = "false" }),
	} {
		if ops, outcome, err := Patch(p, defaults); ops != nil || outcome != Skipped || err != nil {
			t.Errorf("%s: %v %v %v", name, ops, outcome, err)
		}
	}
	// An API's pod that opts out of tokens explicitly gets the sidecar alone.
	p := pod(func(p *corev1.Pod) {
		p.Labels[LabelClientTokens] = "false"
		p.Annotations[AnnotationClientTokenAudiences] = "refunds"
	})
	ops, outcome, err := Patch(p, defaults)
	if err != nil || outcome != Injected {
		t.Fatalf("%v %v", outcome, err)
	}
	if got := apply(t, p, ops); len(tokenMounts(got)) != 0 || len(tokenSources(t, got)) != 0 {
		t.Fatal("tokens for a pod labelled not to have them")
	}
}

// Kubernetes' bounds of a token's lifetime are the webhook's: both ends are taken.
func TestClientTokensLifetimeBounds(t *testing.T) {
	for _, exp := range []string{"600", "4294967296", " 7200 "} {
		p := clientPod(func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenExpirationSeconds] = exp })
		ops, outcome, err := Patch(p, defaults)
		if err != nil || outcome != Injected {
			t.Fatalf("%q: %v %v", exp, outcome, err)
		}
		want := map[string]string{"refunds": "refunds " + strings.TrimSpace(exp)}
		if got := tokenSources(t, apply(t, p, ops)); !maps.Equal(got, want) {
			t.Errorf("%q: tokens %v, want %v", exp, got, want)
		}
	}
}

// The tokengate sidecar never mounts a client's tokens: not when a pod has it already
// (injected before, or a copy of a stored pod) and every container gets them, and
// not by name.
func TestClientTokensNeverInTheSidecar(t *testing.T) {
	withSidecar := func(p *corev1.Pod) {
		p.Annotations[AnnotationStatus] = StatusInjected
		p.Spec.InitContainers = append([]corev1.Container{{Name: ContainerName, Image: "ghcr.io/tokengate/tokengate:e2e"}}, p.Spec.InitContainers...)
	}
	p := clientPod(withSidecar)
	ops, outcome, err := Patch(p, defaults)
	if err != nil || outcome != Injected {
		t.Fatalf("%v %v", outcome, err)
	}
	want := map[string]string{"wait": ClientTokenDir, "app": ClientTokenDir, "worker": ClientTokenDir}
	if got := tokenMounts(apply(t, p, ops)); !maps.Equal(got, want) {
		t.Errorf("mounts %v, want %v", got, want)
	}

	_, outcome, err = Patch(clientPod(func(p *corev1.Pod) {
		withSidecar(p)
		p.Annotations[AnnotationClientTokenContainers] = "app, tokengate"
	}), defaults)
	if outcome != Refused || err == nil || !strings.Contains(err.Error(), `names container "tokengate", the tokengate sidecar, which never takes a client token`) {
		t.Fatalf("%v %v", outcome, err)
	}
}

func TestClientTokensRefusals(t *testing.T) {
	var many []string
	for i := range MaxClientTokenAudiences + 1 {
		many = append(many, "api"+strconv.Itoa(i))
	}
	seventeen := strings.Join(many, ",")
	for _, tc := range []struct {
		name string
		mut  func(*corev1.Pod)
		want string
	}{
		{"label yes", func(p *corev1.Pod) { p.Labels[LabelClientTokens] = "yes" }, `label tokengate.io/client-tokens is "yes": set it to "true" to mount client tokens or "false" not to`},
		{"no audiences", func(p *corev1.Pod) { delete(p.Annotations, AnnotationClientTokenAudiences) }, "annotation tokengate.io/client-token-audiences is missing"},
		{"empty audiences", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = "  " }, "tokengate.io/client-token-audiences is empty: list at least one audience"},
		{"only commas", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = " , " }, "has an empty audience (number 1)"},
		{"an extra comma", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = "refunds,,orders" }, "has an empty audience (number 2): remove the extra comma"},
		{"a trailing comma", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = "refunds," }, "has an empty audience (number 2)"},
		{"too many", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = seventeen }, "lists 17 audiences: at most 16"},
		{"too long", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = strings.Repeat("a", 254) }, "audience number 1 of annotation tokengate.io/client-token-audiences is 254 bytes long: at most 253"},
		{"a space", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = "re funds" }, `audience "re funds" of annotation tokengate.io/client-token-audiences has a space`},
		{"a control character", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = "refunds\x7f" }, `has a space, a control or a non-ASCII character`},
		{"non-ASCII", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = "refünds" }, `has a space, a control or a non-ASCII character`},
		{"twice", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = "refunds, refunds" }, `audience "refunds" is listed twice`},
		{"one file for two", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = "api://refunds,api:/_refunds" }, `audiences "api://refunds" and "api:/_refunds" of annotation tokengate.io/client-token-audiences would share the token file api___refunds`},
		{"expiration too short", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenExpirationSeconds] = "599" }, `tokengate.io/client-token-expiration-seconds is "599": it must be a number of seconds from 600`},
		{"expiration too long", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenExpirationSeconds] = "4294967297" }, "to 4294967296"},
		{"expiration a duration", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenExpirationSeconds] = "1h" }, `tokengate.io/client-token-expiration-seconds is "1h"`},
		{"no service account", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "" }, "the pod names no ServiceAccount (spec.serviceAccountName)"},
		{"containers empty", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenContainers] = "" }, `annotation tokengate.io/client-token-containers is "": list container names`},
		{"a container twice", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenContainers] = "app,app" }, `names container "app" twice`},
		{"an unknown container", func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenContainers] = "app,web" },
			`names container "web", which the pod does not have (it has "wait", "app", "worker")`},
		{"the mount path taken", func(p *corev1.Pod) {
			p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "cache", MountPath: ClientTokenDir + "/"}}
		}, `container "worker" already mounts volume "cache" at /var/run/secrets/tokengate.io/tokens, where the tokens go`},
		{"the volume name taken", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: ClientTokenVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		}, `a volume is already named "tokengate-client-tokens"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, outcome, err := Patch(clientPod(tc.mut), defaults)
			var r *Refusal
			if ops != nil || outcome != Refused || !errors.As(err, &r) {
				t.Fatalf("%v %v %v", ops, outcome, err)
			}
			if !strings.HasPrefix(err.Error(), "tokengate: the pod asks for client tokens but cannot get it: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%q lacks %q", err, tc.want)
			}
		})
	}
	t.Run("annotations on an API's pod without the label", func(t *testing.T) {
		_, outcome, err := Patch(pod(func(p *corev1.Pod) { p.Annotations[AnnotationClientTokenAudiences] = "refunds" }), defaults)
		if outcome != Refused || err == nil || !strings.Contains(err.Error(), `annotation tokengate.io/client-token-audiences needs the label tokengate.io/client-tokens: "true"`) ||
			!strings.HasPrefix(err.Error(), "tokengate: the pod asks for the tokengate sidecar but cannot get it") {
			t.Fatalf("%v %v", outcome, err)
		}
	})
	t.Run("every problem at once, of both", func(t *testing.T) {
		_, _, err := Patch(pod(func(p *corev1.Pod) {
			p.Labels[LabelClientTokens] = "true"
			p.Annotations[AnnotationClientTokenAudiences] = "a,a"
			p.Annotations[AnnotationClientTokenExpirationSeconds] = "60"
			delete(p.Annotations, AnnotationConfig)
		}), defaults)
		var r *Refusal
		if !errors.As(err, &r) || len(r.Problems) != 4 || !strings.HasPrefix(err.Error(), "tokengate: the pod asks for the tokengate sidecar and client tokens but cannot get it: ") {
			t.Fatalf("%v", err)
		}
	})
}

func TestTokenFileName(t *testing.T) {
	for audience, want := range map[string]string{
		"refunds":                        "refunds",
		"Refunds-API_v2.1":               "Refunds-API_v2.1",
		"https://refunds.example.com":    "https___refunds.example.com",
		"https://api.example.com/orders": "https___api.example.com_orders",
		"api://orders":                   "api___orders",
		"urn:example:refunds":            "urn_example_refunds",
		".hidden":                        "_hidden",
		"..data":                         "_.data",
		"a..b":                           "a..b",
	} {
		if got := TokenFileName(audience); got != want {
			t.Errorf("TokenFileName(%q) = %q, want %q", audience, got, want)
		}
	}
	if got := TokenPath("https://refunds.example.com"); got != "/var/run/secrets/tokengate.io/tokens/https___refunds.example.com" {
		t.Error(got)
	}
}

// safeName is what Kubernetes and the kubelet accept as the file of a projected token,
// and more: one path element, not hidden.
var safeName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)

// FuzzClientTokenAnnotations: whatever a pod's creator writes in the annotations, the
// webhook refuses or patches; a patch applies, gives each container one read-only mount,
// names files Kubernetes accepts, and is not made twice.
func FuzzClientTokenAnnotations(f *testing.F) {
	f.Add("refunds", "", "")
	f.Add("refunds, https://orders.example.com", "7200", "app")
	f.Add("a:b,a/b", "600", "worker,wait")
	f.Add(".., .", "4294967296", " app , app ")
	f.Add("a:b,c", "600", "app")
	f.Add(".x", "4294967296", "worker")
	f.Add("refunds,,", "1e3", "")
	f.Fuzz(func(t *testing.T, audiences, exp, containers string) {
		p := clientPod(func(p *corev1.Pod) {
			p.Annotations[AnnotationClientTokenAudiences] = audiences
			if exp != "" {
				p.Annotations[AnnotationClientTokenExpirationSeconds] = exp
			}
			if containers != "" {
				p.Annotations[AnnotationClientTokenContainers] = containers
			}
		})
		ops, outcome, err := Patch(p, defaults)
		var r *Refusal
		switch outcome {
		case Refused:
			if !errors.As(err, &r) || len(r.Problems) == 0 || ops != nil {
				t.Fatalf("a refusal without problems: %v", err)
			}
			return
		case Injected:
		default:
			t.Fatalf("%v %v", outcome, err)
		}
		got := apply(t, p, ops)
		sources := tokenSources(t, got)
		if len(sources) == 0 || len(sources) > MaxClientTokenAudiences {
			t.Fatalf("%d tokens", len(sources))
		}
		files := map[string]bool{}
		for a, s := range sources {
			file, _, _ := strings.Cut(s, " ")
			if !safeName.MatchString(file) || files[file] || file != TokenFileName(a) || len(a) > MaxClientTokenAudienceLength || !strings.Contains(audiences, a) {
				t.Fatalf("audience %q has file %q", a, file)
			}
			files[file] = true
		}
		for name, at := range tokenMounts(got) {
			if at != ClientTokenDir {
				t.Fatalf("container %s mounts the tokens at %s", name, at)
			}
		}
		if ops, outcome, err := Patch(got, defaults); ops != nil || outcome != Skipped || err != nil {
			t.Fatalf("second patch: %v %v %v", ops, outcome, err)
		}
	})
}

// The admission plumbing: a client pod's review gets the patch, its log line says what.
func TestWebhookClientTokens(t *testing.T) {
	var logs strings.Builder
	wh, err := NewWebhook(defaults, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewPedanticRegistry())
	if err != nil {
		t.Fatal(err)
	}
	_, out := post(t, wh, review(t, clientPod(nil), admissionv1.Create, "Pod"))
	var ops []Op
	if r := out.Response; !r.Allowed || r.PatchType == nil || json.Unmarshal(r.Patch, &ops) != nil || len(ops) != 4 {
		t.Fatalf("%+v", out.Response)
	}
	if !strings.Contains(logs.String(), "pod patched") || !strings.Contains(logs.String(), "sidecar=false clientTokens=true") {
		t.Fatalf("log: %s", logs.String())
	}
	_, out = post(t, wh, review(t, clientPod(func(p *corev1.Pod) { p.Spec.ServiceAccountName = "" }), admissionv1.Create, "Pod"))
	if out.Response.Allowed || out.Response.Result.Code != 400 || !strings.Contains(out.Response.Result.Message, "the pod asks for client tokens but cannot get it: the pod names no ServiceAccount") {
		t.Fatalf("%+v", out.Response)
	}
}
