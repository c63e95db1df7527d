package policy_test

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/policy"
)

// keysOf lists the keys of the configuration format, from the struct tags: the format
// is the code, so the documentation is checked against it.
func keysOf(t reflect.Type, prefix string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		*out = append(*out, key)
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keysOf(ft.Elem(), key+"[]", out)
		case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)):
			keysOf(ft, key, out)
		}
	}
}

func TestConfigurationDocIsComplete(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-zA-Z.\\[\\]]+)` \\|([^|]*)\\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = strings.TrimSpace(m[2])
	}
	var keys []string
	keysOf(reflect.TypeOf(policy.Config{}), "", &keys)
	for _, k := range keys {
		if _, ok := documented[k]; !ok {
			t.Errorf("docs/configuration.md does not document %s", k)
		}
	}
	flags := map[string]bool{"--config": true}
	for k := range documented {
		if !strings.HasPrefix(k, "--") && !slices.Contains(keys, k) && !flags[k] {
			t.Errorf("docs/configuration.md documents %s, which the format does not have", k)
		}
	}

	// The defaults the documentation states are the ones the code applies.
	algs := jwks.DefaultAlgorithms()
	var claims []string
	for c, h := range policy.DefaultClaimHeaders() {
		claims = append(claims, c+": "+h)
	}
	sort.Strings(claims)
	for key, want := range map[string]string{
		"listen":                            "`" + policy.DefaultListen + "`",
		"admin":                             "`" + policy.DefaultAdmin + "`",
		"mode":                              "`" + policy.ModeEnforce + "`",
		"issuers[].algorithms":              "`" + strings.Join(algs, " ") + "`",
		"issuers[].refresh.min":             "`" + short(jwks.DefaultRefreshMin) + "`",
		"issuers[].refresh.max":             "`" + short(jwks.DefaultRefreshMax) + "`",
		"issuers[].refresh.unknownKidEvery": "`" + short(jwks.DefaultUnknownKIDEvery) + "`",
		"issuers[].refresh.unknownKidWait":  "`" + short(jwks.DefaultUnknownKIDWait) + "`",
		"tokens.leeway":                     "`" + short(middleware.DefaultLeeway) + "`",
		"tokens.maxBytes":                   "`" + itoa(middleware.DefaultMaxBytes) + "`",
		"tokens.cache.entries":              "`" + itoa(middleware.DefaultCacheEntries) + "`",
		"tokens.cache.bytes":                "`" + policy.ByteSize(middleware.DefaultCacheBytes).String() + "`",
		"upstreamPaths":                     "`" + string(middleware.PathsStrict) + "`",
		"limits.bodyIdle":                   "`" + short(policy.DefaultBodyIdle) + "`",
		"limits.tunnelIdle":                 "`" + short(policy.DefaultTunnelIdle) + "`",
		"forward.stripHeaders":              "`" + strings.Join(policy.DefaultStripHeaders(), " ") + "`",
		"forward.claims":                    "`{" + strings.Join(sortedBy(claims, []string{"sub", "client_id", "scope"}), ", ") + "}`",
		"issuers[].kubernetes.apiServer":    "`" + policy.DefaultAPIServer + "`",
		"issuers[].kubernetes.tokenFile":    "`" + policy.DefaultTokenFile + "`",
		"issuers[].kubernetes.caFile":       "`" + policy.DefaultCAFile + "`",
		"issuers[].kubernetes.source":       "`" + policy.SourceInCluster + "` (none with `jwksFile` or `jwks`, which then hold the keys)",
		"forward.kubernetes.namespace":      "`" + policy.DefaultNamespaceHeader + "`",
		"forward.kubernetes.serviceAccount": "`" + policy.DefaultServiceAccountHeader + "`",
	} {
		if got := documented[key]; got != want {
			t.Errorf("%s: the doc says %s, the code %s", key, got, want)
		}
	}
}

// short writes durations as the documentation does: 1m, 1h, 30s.
func short(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
	return d.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// sortedBy orders "claim: header" entries in the order the documentation uses.
func sortedBy(entries, order []string) []string {
	out := make([]string, 0, len(entries))
	for _, o := range order {
		for _, e := range entries {
			if strings.HasPrefix(e, o+": ") {
				out = append(out, e)
			}
		}
	}
	return out
}
