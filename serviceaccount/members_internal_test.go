package serviceaccount

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strings"
	"testing"
)

// decoderMembers is members written with a json.Decoder: slower, and the oracle that
// the hand-written scan must agree with.
func decoderMembers(what string, raw []byte, names ...string) (map[string][]byte, error) {
	notObject := fmt.Errorf("%s is not a JSON object", what)
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, notObject
	}
	out := map[string][]byte{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, notObject
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, notObject
		}
		for _, n := range names {
			if !strings.EqualFold(key, n) {
				continue
			}
			if key != n {
				return nil, fmt.Errorf("%s has a member whose name differs from %q only in case", what, n)
			}
			if _, dup := out[n]; dup {
				return nil, fmt.Errorf("%s has %q twice", what, n)
			}
			out[n] = v
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, notObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, notObject
	}
	return out, nil
}

// FuzzMembers: on valid JSON, the scan agrees with a json.Decoder.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{
		`{"namespace": "payments", "serviceaccount": {"name": "billing", "uid": "u1"}, "pod": {"name": "p", "uid": "u2"}}`,
		` { "namespace" : "a" , "x" : [1, {"namespace": "b"}, "}"] , "node" : null } `,
		`{"namespace": "a", "namespace": "b"}`,
		`{"namespace": "a", "Namespace": "b"}`,
		`{"name\u017fpace": "a"}`,
		`{"name\u0073pace": "a\"}", "pod": -1.5e3, "node": true}`,
		`{}`, `{ }`, `[]`, `"x"`, `null`, `{"a":}`, `{"a":1,}`, `{"a":1} {}`, `{"a":1}]`,
		`{"a":"\ud800"}`, "{\"a\":\"\xff\"}", "{\"\xff\":1}",
	} {
		f.Add([]byte(s))
	}
	names := []string{"namespace", "serviceaccount", "pod", "node", "name", "uid"}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return // KubernetesClaim checks it first
		}
		got, err := members("x", raw, names...)
		want, wantErr := decoderMembers("x", raw, names...)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("%q: error %v, the decoder's %v", raw, err, wantErr)
		}
		if !maps.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("%q: %q, the decoder's %q", raw, got, want)
		}
	})
}
