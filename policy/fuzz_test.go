package policy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/metrics"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tokengate/tokengate/internal/joined"
	"github.com/tokengate/tokengate/middleware"
)

// FuzzConfig feeds the configuration loader arbitrary bytes, with the last line
// repeated rep times (long lists of aliases, keys or routes, which byte mutations
// seldom build). What must hold:
//
//   - it never panics, and returns a configuration or an error, never both or neither;
//   - every problem is a *Problem naming the file; none echoes more than maxEcho bytes
//     of the file per field, the key and the message; none leaks a Go type name or a
//     YAML tag (the messages are for operators, as TestLoadProblems says); a line it
//     names is in the file; a YAML type error and a key problem name their line;
//   - the work is linear in the file: the heap allocated while loading, and the length
//     of the error, grow at most by a fixed factor of the file's size, so that a small
//     file (a YAML alias bomb, say) cannot make the sidecar allocate gigabytes, or log
//     megabytes, on every reload;
//   - a configuration that loads loads the same way again, passes middleware.Validate,
//     and, written back as YAML, loads to the same policy.
//
// Before fuzzing it checks the size cap: LoadFile refuses a file one byte over
// maxConfigBytes and accepts a valid one of exactly maxConfigBytes.
func FuzzConfig(f *testing.F) {
	checkSizeCap(f)
	for _, s := range fuzzConfigSeeds(f) {
		f.Add([]byte(s), uint8(0))
	}
	const name = "tokengate.yaml"
	f.Fuzz(func(t *testing.T, data []byte, rep uint8) {
		data = repeatLastLine(data, int(rep))
		before := heapAllocs()
		l, err := Load(name, data, ForProxy, Overrides{})
		allocated := heapAllocs() - before
		if (l == nil) == (err == nil) {
			t.Fatalf("configuration %v and error %v", l != nil, err)
		}
		// 1 MiB of slack and 2 KiB per byte: ordinary files take well under 1 KiB per
		// byte (a list of routes, each compiled into every copy of the route table's
		// mux, about 500 bytes). The count is process-wide and taken a span at a time,
		// so a load over the limit is measured again before it fails.
		if limit := 1<<20 + 2<<10*uint64(len(data)); allocated > limit {
			before = heapAllocs()
			_, _ = Load(name, data, ForProxy, Overrides{})
			if again := heapAllocs() - before; again > limit {
				t.Fatalf("loading %d bytes allocated %d bytes (then %d), more than %d: the work is not linear in the file", len(data), allocated, again, limit)
			}
		}
		if err != nil {
			checkProblems(t, name, data, err)
			return
		}

		again, err := Load(name, data, ForProxy, Overrides{})
		if err != nil || !reflect.DeepEqual(l, again) {
			t.Fatalf("loaded twice, differently (%v):\n%+v\n%+v", err, l, again)
		}
		if err := middleware.Validate(l.Gate); err != nil {
			t.Fatalf("loaded, but the middleware refuses its configuration: %v", err)
		}
		// Written back, it must load to the same policy. Compared as YAML, where a nil
		// list and an empty one are the same.
		out := marshal(t, asWritten(reflect.ValueOf(l.File)))
		back, err := Load(name, out, ForProxy, Overrides{})
		if err != nil {
			t.Fatalf("written back, it does not load: %v\n%s", err, out)
		}
		if a, b := marshal(t, []any{l.Gate, l.Forward, l.Listen, l.Admin, l.Upstream.String(), l.AuthzListen}), marshal(t, []any{back.Gate, back.Forward, back.Listen, back.Admin, back.Upstream.String(), back.AuthzListen}); string(a) != string(b) {
			t.Fatalf("written back, it loads to another policy:\n%s\nthen\n%s\nfrom\n%s", a, b, out)
		}
	})
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatalf("%v cannot be written as YAML: %v", v, err)
	}
	return out
}

// asWritten is a value of the configuration format as a file says it, for yaml.Marshal:
// a nil list, map or pointer is a key left out (its default), not an empty value.
func asWritten(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer:
		return asWritten(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		for i := range v.NumField() {
			fv := v.Field(i)
			switch fv.Kind() {
			case reflect.Pointer, reflect.Slice, reflect.Map:
				if fv.IsNil() {
					continue
				}
			}
			m[strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0]] = asWritten(fv)
		}
		return m
	case reflect.Slice:
		out := []any{}
		for i := range v.Len() {
			out = append(out, asWritten(v.Index(i)))
		}
		return out
	case reflect.Map:
		m := map[string]any{}
		for it := v.MapRange(); it.Next(); {
			m[it.Key().String()] = asWritten(it.Value())
		}
		return m
	}
	return v.Interface()
}

// repeatLastLine appends n copies of the last line of data (up to 64 KiB in all): long
// lists (of aliases, keys, routes), which byte mutations seldom build, in one step.
func repeatLastLine(data []byte, n int) []byte {
	if n == 0 || len(data) == 0 {
		return data
	}
	if data[len(data)-1] != '\n' {
		data = append(data[:len(data):len(data)], '\n')
	}
	line := data[bytes.LastIndexByte(data[:len(data)-1], '\n')+1:]
	if n*len(line) > 64<<10 {
		n = 64 << 10 / len(line)
	}
	return append(data[:len(data):len(data)], bytes.Repeat(line, n)...)
}

// unparsedLine is a YAML error location that yamlProblem failed to move to Line.
var unparsedLine = regexp.MustCompile(`^line [0-9]+:`)

// leaks are YAML tags and Go package names, which mean nothing to an operator: a
// problem may hold one only when the file does.
var leaks = []string{"!!seq", "!!map", "!!str", "!!int", "!!float", "!!bool", "!!null", "!!binary", "!!timestamp", "!!merge", "policy.", "middleware.", "jwks.", "time.Duration"}

func checkProblems(t *testing.T, name string, data []byte, err error) {
	t.Helper()
	// 4 KiB of slack, and 128 bytes per byte: an unknown one-letter key costs a line
	// with the key's path and the keys known there.
	if limit := 4<<10 + 128*len(data); len(err.Error()) > limit {
		t.Fatalf("%d bytes of file gave %d bytes of error, more than %d", len(data), len(err.Error()), limit)
	}
	lines := lineBreaks(data) + 2
	for _, e := range joined.Flatten(err) {
		var p *Problem
		if !errors.As(e, &p) {
			t.Fatalf("a problem that is not a *Problem: %T %v", e, e)
		}
		msg := e.Error()
		if p.Path != name {
			t.Fatalf("a problem that does not name the file: %q", msg)
		}
		// The file name, a line number, two separators and two clipped fields.
		if limit := len(name) + 24 + 2*(maxEcho+len("… (4294967296 bytes in all)")); len(msg) > limit {
			t.Fatalf("a problem of %d bytes, more than %d: %.200q…", len(msg), limit, msg)
		}
		for _, leak := range leaks {
			if strings.Contains(msg, leak) && !bytes.Contains(data, []byte(leak)) {
				t.Fatalf("a Go type name or a YAML tag leaks into the problem: %q", msg)
			}
		}
		if p.Line < 0 || p.Line > lines {
			t.Fatalf("a problem on line %d of a file of %d lines: %q", p.Line, lines-2, msg)
		}
		if unparsedLine.MatchString(p.Message) {
			t.Fatalf("a problem whose line is left in the message: %q", msg)
		}
		if p.Line == 0 && (strings.Contains(p.Message, "cannot unmarshal") || strings.HasPrefix(p.Message, "unknown key") || p.Message == "appears twice") {
			t.Fatalf("a problem that names no line: %q", msg)
		}
	}
}

// lineBreaks counts the line breaks YAML sees: CR LF, CR, LF, NEL, LS and PS.
func lineBreaks(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	n := 0
	for _, r := range s {
		switch r {
		case '\n', '\r', '\u0085', '\u2028', '\u2029':
			n++
		}
	}
	return n
}

// heapAllocs is the cumulative count of bytes allocated on the heap.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// checkSizeCap checks that LoadFile refuses a file over maxConfigBytes, and accepts a
// valid one of exactly that size.
func checkSizeCap(f *testing.F) {
	dir := f.TempDir()
	valid := fuzzConfigSeeds(f)[0]
	exact := valid + "#" + strings.Repeat("x", maxConfigBytes-len(valid)-2) + "\n"
	for _, tc := range []struct {
		size int
		ok   bool
	}{{maxConfigBytes, true}, {maxConfigBytes + 1, false}} {
		file := filepath.Join(dir, "tokengate.yaml")
		data := exact
		if tc.size > len(exact) {
			data += strings.Repeat("#", tc.size-len(exact))
		}
		if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
			f.Fatal(err)
		}
		_, err := LoadFile(file, ForProxy, Overrides{})
		switch {
		case tc.ok && err != nil:
			f.Fatalf("a valid file of %d bytes, the cap: %v", len(data), err)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), "larger than")):
			f.Fatalf("a file of %d bytes, over the cap of %d: %v", len(data), maxConfigBytes, err)
		}
	}
}

// fuzzConfigSeeds are the example of docs/configuration.md (first), the files of
// config_test.go, and odd ones: YAML syntax, types, duplicates, anchors and aliases.
func fuzzConfigSeeds(f *testing.F) []string {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		f.Fatal(err)
	}
	_, example, ok := strings.Cut(string(doc), "## Example\n\n```yaml\n")
	example, _, ok2 := strings.Cut(example, "```")
	if !ok || !ok2 {
		f.Fatal("docs/configuration.md has no example under ## Example")
	}
	const minimal = "upstream: http://127.0.0.1:8080\nissuers:\n  - issuer: https://auth.example.com\n    audiences: [https://orders.example.com]\nroutes:\n  - match: /\n"
	return []string{
		example,
		minimal,
		minimal + "mode: shadow\nrealm: orders\ntokens:\n  leeway: 0s\n  cache: {entries: 0}\n",
		minimal + "tokens:\n  maxLifetime: 1h\n  maxBytes: 4096\n  cookie: at\n  query: access_token\n",
		minimal + "forward:\n  claims: {sub: X-User, tenant: X-Tenant}\n  removeAuthorization: true\n",
		minimal + "forward:\n  claims: {}\n",
		strings.Replace(minimal, "http://", "h2c://", 1),
		minimal + "authz:\n  listen: 127.0.0.1:9191\n",
		strings.Replace(minimal, "audiences:", "audience:", 1),
		minimal + "lisen: :80\n",
		minimal + "listen: :1\nlisten: :2\n",
		minimal + "tokens:\n  maxBytes: lots\n  leeway: soon\n",
		"issuers: [\n",
		"",
		"---\n",
		"a: b: c\n",
		"\tupstream: x\n",
		"upstream: localhost:8080\nmode: strict\nissuers:\n  - issuer: http://auth.example.com\n    algorithms: [HS256]\nroutes:\n  - match: \"GET /a/{x\"\n  - match: \"/\"\n    public: true\n    scopes: [a]\nforward:\n  claims: {sub: \"X Subject\", client_id: Authorization}\n",
		"upstream: http://127.0.0.1:8080\nissuers:\n  - &i\n    issuer: https://auth.example.com\n    audiences: &a [https://a.example.com, https://b.example.com]\n  - *i\nroutes:\n  - match: /\n    scopes: *a\n",
		"upstream: &u http://127.0.0.1:8080\nrealm: *u\nissuers: [{issuer: https://a.example.com, audiences: [x]}]\nroutes: [{match: /}]\n",
		// Aliases: a few of a list (each re-checked where it is used), and of a
		// mapping with unknown keys (each reported where it is used).
		"issuers:\n  - &i {issuer: x, audiences: [" + strings.Repeat("a, ", 99) + "a]}\n" + strings.Repeat("  - *i\n", 8),
		"issuers:\n  - &i {refresh: {a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p}}\n" + strings.Repeat("  - *i\n", 8),
		"routes:\n  - match: \"GET /{a}/{a}\"\n",
		"tokens: {maxBytes: -1, leeway: 99999h}\n",
		"upstream: \"\\x00\\u2028\"\n",
		"\xff\xfe",
		"issuers:\n  - issuer: " + strings.Repeat("x", 5000) + "\n",
		// Kubernetes clusters' issuers: public discovery, with allow lists and renamed
		// identity headers; inline keys; the in-cluster defaults (whose mounted files
		// are missing here); malformed allow lists.
		"upstream: http://127.0.0.1:8080\nissuers:\n  - issuer: https://oidc.eks.example.com/id/1\n    audiences: [orders]\n    kubernetes: {source: public}\nroutes:\n  - match: POST /refunds\n    serviceAccounts: [payments/billing, monitoring/*]\n  - match: /\nforward:\n  kubernetes: {namespace: X-Ns, serviceAccount: \"\"}\n",
		"upstream: http://127.0.0.1:8080\nissuers:\n  - issuer: https://kubernetes.default.svc.cluster.local\n    audiences: [orders]\n    jwks: '" + inlineJWKS + "'\n    kubernetes:\nroutes:\n  - match: /\n    serviceAccounts: [shop/*]\n",
		strings.Replace(minimal, "orders.example.com]\n", "orders.example.com]\n    kubernetes: {apiServer: https://10.0.0.1:6443, tokenFile: /t, caFile: /c}\n", 1),
		strings.NewReplacer("orders.example.com]\n", "orders.example.com]\n    kubernetes: {source: public}\n",
			"  - match: /\n", "  - match: /\n    serviceAccounts: [\"*/billing\", Payments/x, a/b/c, \"\"]\n").Replace(minimal) + "forward:\n  kubernetes: {namespace: Host}\n",
	}
}

// inlineJWKS is a key set of one ES256 key, as a configuration file holds it.
const inlineJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","use":"sig","alg":"ES256","x":"h7vQPkqloAqtK2fxhBt2QTzwJcBD4jlb_k8TTPwEXSo","y":"LcjP8v06lTIVtEUObY_OqAuBSSPL4LpXmjHX3Yq4neY"}]}`
