package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/sidecar"
	"github.com/tokengate/tokengate/sidecar/inject"
)

// flagDefaults runs a command's -h and reads the default of every flag from its help.
func flagDefaults(t *testing.T, cmd string) map[string]string {
	t.Helper()
	var out bytes.Buffer
	run(context.Background(), []string{cmd, "-h"}, &out, &out)
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z-]+), \$[A-Z_]+(?: \(default (.*)\))?$`).FindAllStringSubmatch(out.String(), -1) {
		got[m[1]] = m[2]
	}
	if len(got) < 5 {
		t.Fatalf("%s -h lists %d flags:\n%s", cmd, len(got), out.String())
	}
	return got
}

// The commands' defaults are the libraries' constants, defined once: a default
// changed in the library changes the command, and the help says what it is.
func TestFlagDefaultsAreTheLibraries(t *testing.T) {
	for cmd, want := range map[string]map[string]string{
		"sidecar": {
			"drain-timeout":    sidecar.DefaultDrainTimeout.String(),
			"upstream-timeout": sidecar.DefaultUpstreamTimeout.String(),
			"log-level":        inject.DefaultSidecarLogLevel,
		},
		"inject": {
			"listen":                 inject.DefaultListenAddr,
			"admin":                  inject.DefaultAdminAddr,
			"tls-cert":               inject.DefaultCertFile,
			"tls-key":                inject.DefaultKeyFile,
			"drain-timeout":          inject.DefaultDrainTimeout.String(),
			"log-level":              inject.DefaultLogLevel,
			"sidecar-log-level":      inject.DefaultSidecarLogLevel,
			"sidecar-cpu-request":    inject.DefaultSidecarCPURequest,
			"sidecar-memory-request": inject.DefaultSidecarMemoryRequest,
			"sidecar-memory-limit":   inject.DefaultSidecarMemoryLimit,
		},
	} {
		got := flagDefaults(t, cmd)
		for flag, w := range want {
			if got[flag] != w {
				t.Errorf("%s --%s: default %q, want %q", cmd, flag, got[flag], w)
			}
		}
		if img := got["sidecar-image"]; cmd == "inject" && !strings.HasPrefix(img, inject.DefaultImageRepository+":") {
			t.Errorf("inject --sidecar-image: default %q, not %s:<version>", img, inject.DefaultImageRepository)
		}
	}
	// Kubernetes gives a container 30 s from SIGTERM to exit; the drains must end
	// before that, or the kubelet kills requests in flight.
	const grace = 30 * time.Second
	for name, d := range map[string]time.Duration{"sidecar": sidecar.DefaultDrainTimeout, "inject": inject.DefaultDrainTimeout} {
		if d <= 0 || d >= grace {
			t.Errorf("%s's drain timeout %s is not under the default grace period %s", name, d, grace)
		}
	}
}
