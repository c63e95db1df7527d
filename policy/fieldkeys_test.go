package policy

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/middleware"
)

// notInFile are the fields of middleware.Config that Load sets itself: no
// library problem can name them for a file's user.
var notInFile = map[string]string{
	"Issuers[0].HTTPTimeout":      "jwks.DefaultHTTPTimeout",
	"Issuers[0].MaxResponseBytes": "jwks.DefaultMaxResponseBytes",
	"Issuers[0].MaxKeys":          "jwks.DefaultMaxKeys",
	// An issuer with kubernetes gets serviceaccount.RequireWorkload, which no file
	// key configures.
	"Issuers[0].Checks[0]": "serviceaccount.RequireWorkload() for an issuer with kubernetes",
	"Tokens.KeepClaims[0]": "the claims forward.claims names",
}

// goPaths lists every field path of a struct type, slices by their first element.
func goPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		ft := f.Type
		if f.Anonymous {
			out = append(out, goPaths(ft, prefix)...)
			continue
		}
		p := prefix + f.Name
		if ft.Kind() == reflect.Slice {
			p += "[0]"
			ft = ft.Elem()
		}
		out = append(out, p)
		if ft.Kind() == reflect.Struct && ft.PkgPath() != "time" {
			out = append(out, goPaths(ft, p+".")...)
		}
	}
	return out
}

// Every field a library problem can name has a key in the file, or is one the
// loader sets itself; the translation of each is a key Load knows.
func TestEveryGoFieldHasAKey(t *testing.T) {
	paths := goPaths(reflect.TypeOf(middleware.Config{}), "")
	if len(paths) < 30 {
		t.Fatalf("only %d paths: %v", len(paths), paths)
	}
	for _, p := range paths {
		if !goFieldPath(p) {
			t.Errorf("goFieldPath(%q) is false", p)
		}
		k, ok := yamlKey(p)
		if _, set := notInFile[p]; set {
			if ok {
				t.Errorf("%s is listed as not in the file, yet translates to %s", p, k)
			}
			continue
		}
		if !ok {
			t.Errorf("%s has no key in the file: add it to renamed or notInFile", p)
			continue
		}
		if !fileHasKey(reflect.TypeOf(Config{}), k) {
			t.Errorf("%s translates to %s, which the file does not have", p, k)
		}
	}
	for _, bad := range []string{"Issuers[0].Config", "Nope", "Tokens.Nope", "Realm[0]", "Issuers.Audiences.X"} {
		if goFieldPath(bad) {
			t.Errorf("goFieldPath(%q) is true", bad)
		}
	}
}

// fileHasKey walks a key of the file ("issuers[0].refresh.min") through the types.
func fileHasKey(t reflect.Type, key string) bool {
	for _, seg := range strings.Split(key, ".") {
		name, _, _ := strings.Cut(seg, "[")
		found := false
		for i := range t.NumField() {
			if f := t.Field(i); f.Tag.Get("yaml") == name {
				t, found = f.Type, true
				break
			}
		}
		if !found {
			return false
		}
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
	}
	return true
}

func TestTranslateProblem(t *testing.T) {
	for _, tc := range []struct{ field, problem, want string }{
		{"Issuers[2].JWKSFile", "set either JWKSURI or JWKSFile, not both", "set either jwksURI or jwksFile, not both"},
		{"Issuers[0].Refresh.Min", "2h is longer than Refresh.Max 1h", "2h is longer than refresh.max 1h"},
		{"Issuers[0].Refresh.Min", "2h is longer than Max 1h", "2h is longer than max 1h"},
		{"Routes[3].Match", `"GET /A" is the same route as another (Routes[1], "GET /a") (PathStyle express)`, `"GET /A" is the same route as another (routes[1], "GET /a") (upstreamPaths express)`},
		{"Realm", `"Realm" cannot be sent in a WWW-Authenticate header`, `"Realm" cannot be sent in a WWW-Authenticate header`},
		{"Issuers[0].Algorithms", `"HS256" is HMAC: a shared secret (RFC 7518) cannot come from a published key set`, `"HS256" is HMAC: a shared secret (RFC 7518) cannot come from a published key set`},
		{"Tokens.Leeway", "1h is more than 5m: Tokens.MaxLifetime is not it", "1h is more than 5m: tokens.maxLifetime is not it"},
	} {
		if got := translateProblem(tc.field, tc.problem); got != tc.want {
			t.Errorf("translateProblem(%q, %q)\n got %q\nwant %q", tc.field, tc.problem, got, tc.want)
		}
	}
}
