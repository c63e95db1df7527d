// Package helmtest renders and lints a Helm chart with Helm itself, for tests: Helm's
// Go packages (helm.sh/helm/v3, pinned in go.mod) compiled into the test binary, doing
// what `helm template` and `helm lint --strict` do. No test builds or runs a Helm
// binary inside its time limit.
package helmtest

import (
	"fmt"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/strvals"
)

// Values turns --set expressions into values, as `helm --set` does.
func Values(set []string) (map[string]any, error) {
	vals := map[string]any{}
	for _, s := range set {
		if err := strvals.ParseInto(s, vals); err != nil {
			return nil, fmt.Errorf("--set %s: %w", s, err)
		}
	}
	return vals, nil
}

// Template renders the chart in dir as `helm template rel DIR --namespace NAMESPACE
// --kube-version KUBEVERSION --set ...` does: a client-only dry-run install, which
// loads the chart, checks the values against its values.schema.json and renders every
// template, hooks included.
func Template(dir, namespace, kubeVersion string, set []string) (string, error) {
	chrt, err := loader.Load(dir)
	if err != nil {
		return "", fmt.Errorf("loading the chart: %w", err)
	}
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return "", err
	}
	vals, err := Values(set)
	if err != nil {
		return "", err
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace, install.KubeVersion = "rel", namespace, kv
	rel, err := install.Run(chrt, vals)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	out.WriteString(rel.Manifest)
	for _, h := range rel.Hooks {
		fmt.Fprintf(&out, "\n---\n# Source: %s\n%s", h.Path, h.Manifest)
	}
	return out.String(), nil
}

// Lint lints the chart in dir as `helm lint --strict` does: a warning fails as an
// error does. It returns every message of a failed lint.
func Lint(dir, namespace, kubeVersion string, set []string) error {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return err
	}
	vals, err := Values(set)
	if err != nil {
		return err
	}
	lint := action.NewLint()
	lint.Strict, lint.Namespace, lint.KubeVersion = true, namespace, kv
	res := lint.Run([]string{dir}, vals)
	if res.TotalChartsLinted == 1 && len(res.Errors) == 0 {
		return nil
	}
	var msgs []string
	for _, m := range res.Messages {
		msgs = append(msgs, m.Error())
	}
	return fmt.Errorf("%d charts linted; errors %v\n%s", res.TotalChartsLinted, res.Errors, strings.Join(msgs, "\n"))
}
