package chart_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tokengate/tokengate/sidecar/inject"
)

// TestDefaultsAreTheInjectors checks that the chart's defaults are the injector's.
// sidecar/inject defines each default once (defaults.go) and `tokengate inject` takes
// its flags' defaults from there; values.yaml cannot import Go, so it repeats the ones
// the chart passes on. Rendered with the default values, the injector's arguments must
// carry exactly those constants: a default changed on one side only fails here, instead
// of the chart and a binary run without it quietly disagreeing.
func TestDefaultsAreTheInjectors(t *testing.T) {
	chartYAML, err := os.ReadFile("Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(chartYAML, &meta); err != nil {
		t.Fatal(err)
	}
	// Every flag the chart passes, with the default it must carry. The sidecar image's
	// tag is the chart's appVersion, the binary's its build version: only the
	// repository is shared.
	want := map[string]string{
		"listen":                 inject.DefaultListenAddr,
		"admin":                  inject.DefaultAdminAddr,
		"tls-cert":               inject.DefaultCertFile,
		"tls-key":                inject.DefaultKeyFile,
		"log-level":              inject.DefaultLogLevel,
		"sidecar-image":          inject.DefaultImageRepository + ":" + meta.AppVersion,
		"sidecar-log-level":      inject.DefaultSidecarLogLevel,
		"sidecar-cpu-request":    inject.DefaultSidecarCPURequest,
		"sidecar-memory-request": inject.DefaultSidecarMemoryRequest,
		"sidecar-memory-limit":   inject.DefaultSidecarMemoryLimit,
	}

	var (
		d    appsv1.Deployment
		hook admissionregistrationv1.MutatingWebhookConfiguration
		pm   podMonitor
	)
	for _, o := range render(t, []string{"monitoring.podMonitor.enabled=true"}) {
		switch o.kind {
		case "Deployment":
			strict(t, o, &d)
		case "MutatingWebhookConfiguration":
			strict(t, o, &hook)
		case "PodMonitor":
			strict(t, o, &pm)
		}
	}

	c := d.Spec.Template.Spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "inject" {
		t.Fatalf("the injector does not run tokengate inject: args %q", c.Args)
	}
	args := map[string]string{}
	for _, a := range c.Args[1:] {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			t.Errorf("argument %q is not --flag=value", a)
			continue
		}
		args[name] = value
		w, known := want[name]
		switch {
		case !known:
			t.Errorf("the chart passes --%s, which this test does not know: add its default in sidecar/inject to want", name)
		case value != w:
			t.Errorf("the chart passes --%s=%s by default, but sidecar/inject's default is %q: change values.yaml or sidecar/inject/defaults.go so that they agree", name, value, w)
		}
	}
	for name := range want {
		if _, ok := args[name]; !ok {
			t.Errorf("the chart no longer passes --%s: drop it from want (and from values.yaml if it came from there)", name)
		}
	}

	// The pod around the binary fits those defaults: its container ports are the
	// ones the injector listens on, its TLS Secret is mounted where the injector reads
	// it, and the kubelet waits for the drain.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, addr := range map[string]string{"webhook": args["listen"], "admin": args["admin"]} {
		if _, port, _ := net.SplitHostPort(addr); port != strconv.Itoa(int(ports[name])) {
			t.Errorf("container port %s is %d, but the injector listens on %q", name, ports[name], addr)
		}
	}
	for _, f := range []string{inject.DefaultCertFile, inject.DefaultKeyFile} {
		if !mounts(c, "tls", filepath.Dir(f)) {
			t.Errorf("the TLS Secret is not mounted at %s, where the injector reads %s", filepath.Dir(f), f)
		}
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	if time.Duration(grace)*time.Second <= inject.DefaultDrainTimeout {
		t.Errorf("the injector's pods get %d s to stop, not more than its drain timeout %s", grace, inject.DefaultDrainTimeout)
	}
	if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != inject.DefaultSidecarRunAsUser {
		t.Errorf("the injector does not run as the image's user %d, as the sidecar does", inject.DefaultSidecarRunAsUser)
	}

	// What the chart's other objects expect of the injector and the sidecar.
	selects := map[string]bool{}
	for _, w := range hook.Webhooks {
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil || *w.ClientConfig.Service.Path != inject.MutatePath {
			t.Errorf("webhook %s does not call %s", w.Name, inject.MutatePath)
		}
		for _, e := range w.ObjectSelector.MatchExpressions {
			selects[e.Key] = true
		}
	}
	for _, label := range []string{inject.LabelInject, inject.LabelClientTokens} {
		if !selects[label] {
			t.Errorf("no webhook selects pods by %s", label)
		}
	}
	if len(pm.Spec.PodMetricsEndpoints) == 0 || pm.Spec.PodMetricsEndpoints[0].Port != inject.AdminPortName {
		t.Errorf("the PodMonitor does not scrape the sidecar's port %s", inject.AdminPortName)
	}
}

// mounts reports whether c mounts the volume at dir.
func mounts(c corev1.Container, volume, dir string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == volume && filepath.Clean(m.MountPath) == dir {
			return true
		}
	}
	return false
}
