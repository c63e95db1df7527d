package inject

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// docs/kubernetes.md documents every label and annotation a pod can use, and shows the
// file of a client token for a few audiences: this keeps both true.
func TestKubernetesDocs(t *testing.T) {
	raw, err := os.ReadFile("../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for _, key := range []string{
		LabelInject, LabelClientTokens, AnnotationUpstreamPort, AnnotationConfig, AnnotationImage, AnnotationPort,
		AnnotationAdminPort, AnnotationLogLevel, AnnotationCPURequest, AnnotationMemoryRequest, AnnotationMemoryLimit,
		AnnotationRedisSecret, AnnotationStatus, AnnotationClientTokenAudiences, AnnotationClientTokenExpirationSeconds,
		AnnotationClientTokenContainers, ClientTokenDir, ClientTokenVolumeName,
	} {
		if !strings.Contains(doc, "`"+key) {
			t.Errorf("docs/kubernetes.md does not document %s", key)
		}
	}
	// The table of audiences and their files.
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\| `(" + regexp.QuoteMeta(ClientTokenDir) + "/[^`]+)` \\|$")
	rows := row.FindAllStringSubmatch(doc, -1)
	if len(rows) < 3 {
		t.Fatalf("docs/kubernetes.md shows %d audiences with their files", len(rows))
	}
	for _, r := range rows {
		if got := TokenPath(r[1]); got != r[2] {
			t.Errorf("docs/kubernetes.md says the token for %q is %s; it is %s", r[1], r[2], got)
		}
	}
}
