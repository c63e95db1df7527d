package policy

import (
	"reflect"
	"regexp"
	"strings"

	"github.com/tokengate/tokengate/middleware"
)

// The libraries name a wrong field by its Go path in middleware.Config
// ("Issuers[0].Audiences", "Tokens.CacheEntries"), since that is what their callers
// wrote; the configuration file's user wrote YAML keys. This file translates one into
// the other: the key of a *middleware.FieldError or *jwks.ConfigError, and the names of
// other fields its problem mentions. TestEveryGoFieldHasAKey keeps it complete.

// renamed holds the Go paths (without indices) whose key is not the Go name with its
// first letter lowered, compared case-insensitively with the file's keys.
var renamed = map[string]string{
	"PathStyle":           "upstreamPaths",
	"Shadow":              "mode",
	"Tokens.CacheEntries": "tokens.cache.entries",
	"Tokens.CacheBytes":   "tokens.cache.bytes",
	"Tokens.NoCache":      "tokens.cache.entries",
	// Secrets come from files.
	"Tokens.DPoP.NonceSecret":              "tokens.dpop.nonceSecretFile",
	"Issuers.Introspection.ClientSecret":   "issuers[].introspection.clientSecretFile",
	"Issuers.Introspection.ClientSecret[]": "issuers[].introspection.clientSecretFile",
	// An issuer with kubernetes (source inCluster) fetches with the pod's token and
	// checks its issuer at the API server.
	"Issuers.BearerTokenFile": "issuers[].kubernetes.tokenFile",
	"Issuers.IssuerCheckURL":  "issuers[].kubernetes.apiServer",
}

// yamlKey translates a Go path of middleware.Config into the file's key, such as
// "Issuers[0].JWKSURI" into "issuers[0].jwksURI". ok is false for a path that is not
// a field of the file (one Load sets itself).
func yamlKey(goPath string) (key string, ok bool) {
	if k, ok := renamed[stripIndices(goPath)]; ok {
		// The indices of goPath, in order, fill the [] of the key.
		for _, idx := range indices.FindAllString(goPath, -1) {
			k = strings.Replace(k, "[]", idx, 1)
		}
		return k, true
	}
	t := reflect.TypeOf(Config{})
	var out []string
	for _, seg := range strings.Split(goPath, ".") {
		name, index, _ := strings.Cut(seg, "[")
		f, found := yamlField(t, name)
		if !found {
			return "", false
		}
		k := f.Tag.Get("yaml")
		if index != "" {
			k += "[" + index
		}
		out = append(out, k)
		t = f.Type
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
	}
	return strings.Join(out, "."), true
}

// yamlField finds the field of struct type t whose YAML key is name, compared case
// insensitively (JWKSURI is jwksURI, UnknownKIDEvery unknownKidEvery).
func yamlField(t reflect.Type, name string) (reflect.StructField, bool) {
	if t.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if strings.EqualFold(f.Tag.Get("yaml"), name) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

var indices = regexp.MustCompile(`\[[0-9]+\]`)

func stripIndices(p string) string { return indices.ReplaceAllString(p, "") }

// goFieldPath reports whether p is the Go path of a field of middleware.Config
// (through embedded structs, and slice elements by index).
func goFieldPath(p string) bool {
	t := reflect.TypeOf(middleware.Config{})
	for _, seg := range strings.Split(p, ".") {
		name, index, indexed := strings.Cut(seg, "[")
		if t.Kind() != reflect.Struct {
			return false
		}
		f, ok := t.FieldByName(name)
		if !ok || !f.IsExported() || f.Anonymous {
			return false
		}
		t = f.Type
		if indexed {
			if t.Kind() != reflect.Slice || !strings.HasSuffix(index, "]") {
				return false
			}
			t = t.Elem()
		}
	}
	return true
}

// goName matches what may be a Go field path in a problem's text: capitalised
// identifiers joined by dots, with indices.
var goName = regexp.MustCompile(`\b[A-Z][A-Za-z0-9]*(?:\[[0-9]+\])?(?:\.[A-Z][A-Za-z0-9]*(?:\[[0-9]+\])?)*\b`)

// translateProblem rewrites the Go field names a problem about field mentions ("set
// either JWKSURI or JWKSFile") as the file's keys, relative to the same parent:
// a name is looked up beside field first, then beside each of its ancestors. Words
// that name no field (RFC, HMAC) are left alone.
func translateProblem(field, problem string) string {
	// Quoted text is a value the user wrote, never a field name.
	var b strings.Builder
	last := 0
	for _, q := range quoted.FindAllStringIndex(problem, -1) {
		b.WriteString(translateNames(field, problem[last:q[0]]))
		b.WriteString(problem[q[0]:q[1]])
		last = q[1]
	}
	b.WriteString(translateNames(field, problem[last:]))
	return b.String()
}

var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

func translateNames(field, text string) string {
	return goName.ReplaceAllStringFunc(text, func(word string) string {
		for parent := parentOf(field); ; parent = parentOf(parent) {
			full := word
			if parent != "" {
				full = parent + "." + word
			}
			if goFieldPath(full) {
				k, ok := yamlKey(full)
				if !ok {
					return word
				}
				if parent == "" {
					return k
				}
				pk, ok := yamlKey(parent)
				if !ok {
					return word
				}
				return strings.TrimPrefix(k, pk+".")
			}
			if parent == "" {
				return word
			}
		}
	})
}

// parentOf is the path of the struct that holds the field at p: "Issuers[0]" for
// "Issuers[0].Audiences", "" for a top-level field.
func parentOf(p string) string {
	i := strings.LastIndexByte(p, '.')
	if i < 0 {
		return ""
	}
	return p[:i]
}
