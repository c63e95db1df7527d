package rules

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

// requestTypeName is the CEL type of the request variable. A struct type rather
// than a map, so that the checker refuses request.mehtod at load.
const requestTypeName = "tokengate.Request"

var (
	requestCELType = types.NewObjectType(requestTypeName, traits.FieldTesterType|traits.IndexerType)
	headersCELType = types.NewMapType(types.StringType, types.StringType)

	errNotRequest = errors.New("not a tokengate.Request")
)

// activation is what one evaluation sees: the claims and the request, resolved on
// demand. One allocation holds it, the request view and the headers' view.
type activation struct {
	claims map[string]any
	req    requestView
}

var _ interpreter.Activation = (*activation)(nil)

func newActivation(r *http.Request, claims map[string]any) *activation {
	a := &activation{claims: claims}
	a.req.r = r
	a.req.headers.h = r.Header
	return a
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "claims":
		return a.claims, true
	case "request":
		return &a.req, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// requestView is the request variable: method, path and host read from the request
// when an expression selects them, headers only when it looks one up.
type requestView struct {
	r       *http.Request
	headers headerMap
}

var (
	_ ref.Val                    = (*requestView)(nil)
	_ traits.Indexer             = (*requestView)(nil)
	_ traits.FieldTester         = (*requestView)(nil)
	_ traits.Mapper              = (*headerMap)(nil)
	_ ref.Type                   = requestDescriptor{}
	_ types.StructTypeDescriptor = requestDescriptor{}
)

// methods are the common methods as CEL values, so that request.method costs no
// allocation for them.
var methods = map[string]ref.Val{
	http.MethodGet: types.String(http.MethodGet), http.MethodHead: types.String(http.MethodHead),
	http.MethodPost: types.String(http.MethodPost), http.MethodPut: types.String(http.MethodPut),
	http.MethodPatch: types.String(http.MethodPatch), http.MethodDelete: types.String(http.MethodDelete),
	http.MethodOptions: types.String(http.MethodOptions), http.MethodConnect: types.String(http.MethodConnect),
	http.MethodTrace: types.String(http.MethodTrace),
}

func (v *requestView) method() ref.Val {
	m := v.r.Method
	if m == "" {
		m = http.MethodGet // net/http: for client requests "" means GET
	}
	if s, ok := methods[m]; ok {
		return s
	}
	return types.String(m)
}

func (v *requestView) path() ref.Val {
	if v.r.URL == nil {
		return types.String("")
	}
	return types.String(v.r.URL.Path)
}

func (v *requestView) field(name string) (ref.Val, bool) {
	switch name {
	case "method":
		return v.method(), true
	case "path":
		return v.path(), true
	case "host":
		return types.String(v.r.Host), true
	case "headers":
		return &v.headers, true
	}
	return nil, false
}

// ConvertToNative refuses: the request is not a value a rule can hand out.
func (v *requestView) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("%s cannot be converted to %v", requestTypeName, t)
}

func (v *requestView) ConvertToType(t ref.Type) ref.Val {
	switch t.TypeName() {
	case types.TypeType.TypeName():
		return requestCELType
	case requestTypeName:
		return v
	}
	return types.NewErr("type conversion error from %s to %s", requestTypeName, t.TypeName())
}

// Equal: a request equals itself only (there is one per evaluation).
func (v *requestView) Equal(other ref.Val) ref.Val { return types.Bool(other == ref.Val(v)) }
func (v *requestView) Type() ref.Type              { return requestCELType }
func (v *requestView) Value() any                  { return v }

// Get serves request.method and friends where the checker did not know the type
// (dyn(request).method).
func (v *requestView) Get(index ref.Val) ref.Val {
	if name, ok := index.(types.String); ok {
		if val, ok := v.field(string(name)); ok {
			return val
		}
	}
	return types.NewErr("no such field: %v", index)
}

func (v *requestView) IsSet(field ref.Val) ref.Val {
	name, ok := field.(types.String)
	if !ok {
		return types.NewErr("no such field: %v", field)
	}
	if _, ok := v.field(string(name)); !ok {
		return types.NewErr("no such field: %s", name)
	}
	return types.True
}

// requestDescriptor declares tokengate.Request to cel-go: its fields for the checker
// and fast field getters for the interpreter.
type requestDescriptor struct{}

var requestFields = map[string]*types.FieldType{
	"method":  requestField(types.StringType, "method"),
	"path":    requestField(types.StringType, "path"),
	"host":    requestField(types.StringType, "host"),
	"headers": requestField(headersCELType, "headers"),
}

func requestField(t *types.Type, name string) *types.FieldType {
	return &types.FieldType{
		Type:  t,
		IsSet: func(any) bool { return true },
		GetFrom: func(obj any) (any, error) {
			v, ok := obj.(*requestView)
			if !ok {
				return nil, errNotRequest
			}
			val, _ := v.field(name)
			return val, nil
		},
	}
}

func (requestDescriptor) HasTrait(trait int) bool { return requestCELType.HasTrait(trait) }
func (requestDescriptor) TypeName() string        { return requestTypeName }
func (requestDescriptor) ReflectType() reflect.Type {
	return reflect.TypeFor[*requestView]()
}

func (requestDescriptor) FieldNames() []string {
	return []string{"headers", "host", "method", "path"}
}

func (requestDescriptor) FindFieldType(name string) (*types.FieldType, bool) {
	f, ok := requestFields[name]
	return f, ok
}

// NewValue refuses tokengate.Request{...} in an expression: the only request is the
// one being decided.
func (requestDescriptor) NewValue(types.Adapter, map[string]ref.Val) ref.Val {
	return types.NewErr("%s values cannot be created", requestTypeName)
}

func (requestDescriptor) Adapt(_ types.Adapter, value any) ref.Val {
	if v, ok := value.(*requestView); ok && v != nil {
		return v
	}
	return types.NewErr("%v", errNotRequest)
}

// headerMap is request.headers: a map(string, string) over the request's header whose
// keys are the header names in lower case (ASCII), and whose values are a header's
// values joined with ", " when it was sent more than once. A look-up scans the header
// without building anything; iterating, sizing or comparing the map, or a third
// look-up, builds it once.
type headerMap struct {
	h     http.Header
	scans int               // look-ups made by scanning h
	built map[string]string // the whole map, once something needs it
}

// lookup finds the value of the lower-case name: the values of every key of h that
// lower-cases to name (net/http canonicalizes keys, so there is one, unless a handler
// set others; then in the order of the keys), joined with ", ".
func (m *headerMap) lookup(name string) (string, bool) {
	if m.built == nil && m.scans >= 2 {
		m.build()
	}
	if m.built != nil {
		v, ok := m.built[name]
		return v, ok
	}
	m.scans++
	var vals []string
	n := 0
	for k, v := range m.h {
		if lowerEqual(k, name) {
			n++
			vals = v
		}
	}
	switch {
	case n == 0:
		return "", false
	case n == 1 && len(vals) == 1:
		return vals[0], true
	case n == 1:
		return strings.Join(vals, ", "), true
	}
	m.build() // several keys, such as "X-Tenant" and "x-tenant" set by a handler
	return m.built[name], true
}

// build makes the whole map: for each lower-case name, the values of its keys in
// the order of the keys, joined with ", ".
func (m *headerMap) build() {
	keys := slices.Sorted(maps.Keys(m.h))
	vals := make(map[string][]string, len(keys))
	for _, k := range keys {
		name := lower(k)
		vals[name] = append(vals[name], m.h[k]...)
	}
	m.built = make(map[string]string, len(vals))
	for name, v := range vals {
		m.built[name] = strings.Join(v, ", ")
	}
}

// lowerEqual reports whether k, with its ASCII letters lower-cased, is name.
func lowerEqual(k, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// mapper is the whole map, built on first use.
func (m *headerMap) mapper() traits.Mapper {
	if m.built == nil {
		m.build()
	}
	return types.NewStringStringMap(types.DefaultTypeAdapter, m.built)
}

func (m *headerMap) Find(key ref.Val) (ref.Val, bool) {
	name, ok := key.(types.String)
	if !ok {
		return nil, false
	}
	v, ok := m.lookup(string(name))
	if !ok {
		return nil, false
	}
	return types.String(v), true
}

func (m *headerMap) Get(key ref.Val) ref.Val {
	if v, ok := m.Find(key); ok {
		return v
	}
	return types.NewErr("no such key: %v", key)
}

func (m *headerMap) Contains(key ref.Val) ref.Val {
	_, ok := m.Find(key)
	return types.Bool(ok)
}

func (m *headerMap) ConvertToNative(t reflect.Type) (any, error) {
	return m.mapper().ConvertToNative(t)
}
func (m *headerMap) ConvertToType(t ref.Type) ref.Val { return m.mapper().ConvertToType(t) }
func (m *headerMap) Equal(other ref.Val) ref.Val      { return m.mapper().Equal(other) }
func (m *headerMap) Type() ref.Type                   { return types.MapType }
func (m *headerMap) Value() any                       { m.mapper(); return m.built }
func (m *headerMap) Iterator() traits.Iterator        { return m.mapper().Iterator() }
func (m *headerMap) Size() ref.Val                    { return m.mapper().Size() }
