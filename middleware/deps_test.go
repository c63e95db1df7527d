package middleware_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A Go service that imports only middleware and jwks gets a small tree (DESIGN.md,
// "Packages and dependencies"): the configuration file's YAML (policy), gRPC and
// Envoy's protos (grpcgate, authz), CEL (rules), a Redis client (replay/redisstore) and
// Kubernetes each belong to a package of their own, which plugs in.
func TestImportsStaySmall(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test=false",
		"github.com/tokengate/tokengate/middleware",
		"github.com/tokengate/tokengate/jwks").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	heavy := []string{
		"go.yaml.in/", "gopkg.in/yaml", "sigs.k8s.io/yaml", // YAML
		"google.golang.org/grpc", "github.com/envoyproxy/", "github.com/cncf/xds", // gRPC, Envoy
		"github.com/google/cel-go", "cel.dev/", "github.com/antlr4-go/", // CEL
		"github.com/redis/", // Redis
		"k8s.io/",           // Kubernetes
		"github.com/tokengate/tokengate/policy", "github.com/tokengate/tokengate/rules",
		"github.com/tokengate/tokengate/authz", "github.com/tokengate/tokengate/grpcgate",
		"github.com/tokengate/tokengate/sidecar",
	}
	n := 0
	for pkg := range strings.Lines(string(out)) {
		pkg = strings.TrimSpace(pkg)
		n++
		for _, h := range heavy {
			if strings.HasPrefix(pkg, h) {
				t.Errorf("middleware or jwks builds %s", pkg)
			}
		}
	}
	if n < 10 {
		t.Fatalf("go list named %d packages: %s", n, out)
	}
}
