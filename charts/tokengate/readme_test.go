package chart_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The chart's README documents every value in a table generated from values.yaml, in
// the manner of helm-docs: a `# --` comment right above a key describes it, and the
// key's value is its default. Generating the table in a test keeps the README from
// drifting from values.yaml without an extra tool; -update rewrites it.

var update = flag.Bool("update", false, "rewrite README.md's table of values from values.yaml")

// The generated table stands between these two lines of README.md; the rest of the
// README is written by hand.
const (
	tableBegin = "<!-- The table below is generated from values.yaml's `# --` comments: edit those, then run\n     go test ./charts/tokengate -run TestReadmeIsCurrent -update -->"
	tableEnd   = "<!-- End of the generated table. -->"
)

// docMarker starts a value's description, as in helm-docs.
const docMarker = "# --"

// chartValue is a documented value of values.yaml: one row of the README's table.
type chartValue struct {
	key         string // dotted path, as --set takes it
	typ         string // string, int, float, bool, list or object
	def         string // the default, as JSON
	description string
}

// readValues parses values.yaml.
func readValues(t *testing.T) *yaml.Node {
	t.Helper()
	raw, err := os.ReadFile("values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseValues(raw)
	if err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	return m
}

// parseValues parses a values file into its top mapping, keeping its comments and
// order (the yaml.v3 Node API), which decoding into Go values would lose.
func parseValues(raw []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a mapping")
	}
	return doc.Content[0], nil
}

// documentedValues lists the values of a values.yaml mapping in file order. A key with
// a `# --` comment is one value, whatever it holds; a mapping without one is a section,
// whose keys are listed in turn. Every other key (a scalar, a list or an empty mapping
// without a `# --` comment) is undocumented, and an error: so is a `# --` comment that
// describes nothing, or that a larger value's description would hide.
func documentedValues(m *yaml.Node) ([]chartValue, error) {
	var (
		values []chartValue
		errs   []error
	)
	var walk func(prefix string, m *yaml.Node)
	walk = func(prefix string, m *yaml.Node) {
		for i := 0; i < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := prefix + k.Value
			if stray(k.LineComment, k.FootComment, v.HeadComment, v.LineComment, v.FootComment) {
				errs = append(errs, fmt.Errorf("%s: a %s comment describes the key below it: move it to the lines right above %s", key, docMarker, key))
			}
			desc, documented := description(k.HeadComment)
			section := v.Kind == yaml.MappingNode && len(v.Content) > 0
			switch {
			case section && !documented:
				walk(key+".", v)
				continue
			case section && describesInside(v):
				errs = append(errs, fmt.Errorf("%s is documented as a whole, and so are keys inside it, which the README would not show: "+
					"make %s a section (a plain # comment) or drop their %s comments", key, key, docMarker))
				continue
			case !documented:
				errs = append(errs, fmt.Errorf("%s has no description: add a %s comment above it", key, docMarker))
				continue
			}
			var def any
			if err := v.Decode(&def); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", key, err))
				continue
			}
			values = append(values, chartValue{key: key, typ: typeName(v), def: compactJSON(def), description: desc})
		}
	}
	walk("", m)
	return values, errors.Join(errs...)
}

// description returns the `# --` description in a key's head comment: the text after
// the marker and the comment lines that follow it, joined. Comment lines above the
// marker are notes for the file's reader.
func description(head string) (string, bool) {
	lines := strings.Split(head, "\n")
	for i, l := range lines {
		text, ok := strings.CutPrefix(strings.TrimSpace(l), docMarker)
		if !ok {
			continue
		}
		words := []string{strings.TrimSpace(text)}
		for _, l := range lines[i+1:] {
			words = append(words, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#")))
		}
		desc := strings.Join(slices.DeleteFunc(words, func(w string) bool { return w == "" }), " ")
		return desc, desc != ""
	}
	return "", false
}

// stray reports whether a `# --` comment sits where no key takes it as its description.
func stray(comments ...string) bool {
	for _, c := range comments {
		for l := range strings.SplitSeq(c, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), docMarker) {
				return true
			}
		}
	}
	return false
}

// describesInside reports whether a key anywhere inside n has a `# --` comment.
func describesInside(n *yaml.Node) bool {
	if n.Kind == yaml.MappingNode {
		for i := 0; i < len(n.Content); i += 2 {
			if _, ok := description(n.Content[i].HeadComment); ok {
				return true
			}
		}
	}
	return slices.ContainsFunc(n.Content, describesInside)
}

// typeName is the value's type in helm-docs' words.
func typeName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "list"
	}
	switch tag := n.ShortTag(); tag {
	case "!!str":
		return "string"
	case "!!int":
		return "int"
	case "!!float":
		return "float"
	case "!!bool":
		return "bool"
	default:
		return strings.TrimPrefix(tag, "!!")
	}
}

// compactJSON writes a default as JSON, as helm-docs does, with mapping keys sorted.
// <, > and & stay as they are: they are shown in a code span.
func compactJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("%v", v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// valuesTable renders the values as a Markdown table.
func valuesTable(values []chartValue) string {
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n")
	b.WriteString("| --- | --- | --- | --- |\n")
	for _, v := range values {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(v.key), v.typ, codeSpan(v.def), cell(v.description))
	}
	return b.String()
}

// cell escapes text for a table cell: a | would end the cell, and a < outside a code
// span would start an HTML tag (values.yaml says "<release>", not a tag).
func cell(s string) string {
	parts := strings.Split(s, "`")
	for i := 0; i < len(parts); i += 2 { // even parts are outside code spans
		parts[i] = strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(parts[i])
	}
	return strings.ReplaceAll(strings.Join(parts, "`"), "|", `\|`)
}

// codeSpan shows s as code in a table cell, with enough backticks to hold any in s.
func codeSpan(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + strings.ReplaceAll(s, "|", `\|`) + fence
}

// generatedReadme returns readme with the table between its markers made from values.
func generatedReadme(readme string, values []chartValue) (string, error) {
	before, rest, ok := strings.Cut(readme, tableBegin+"\n")
	if !ok {
		return "", fmt.Errorf("README.md has no line %q to put the table of values after", tableBegin)
	}
	_, after, ok := strings.Cut(rest, tableEnd)
	if !ok {
		return "", fmt.Errorf("README.md has no line %q after the table of values", tableEnd)
	}
	return before + tableBegin + "\n\n" + valuesTable(values) + "\n" + tableEnd + after, nil
}

// TestReadmeIsCurrent checks that README.md documents every value of values.yaml as
// values.yaml does, and that every value has a description. With -update it rewrites
// the table instead of failing.
func TestReadmeIsCurrent(t *testing.T) {
	values, err := documentedValues(readValues(t))
	if err != nil {
		t.Fatalf("values.yaml:\n%v", err)
	}
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := generatedReadme(string(raw), values)
	if err != nil {
		t.Fatal(err)
	}
	if want == string(raw) {
		return
	}
	if *update {
		if err := os.WriteFile("README.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("README.md rewritten")
		return
	}
	t.Errorf("README.md's table of values is not what values.yaml says: run\n\tgo test ./charts/tokengate -run TestReadmeIsCurrent -update\n%s", firstDifference(string(raw), want))
}

// TestUndocumentedValuesFail checks that the generator refuses what it cannot
// document, rather than leaving a value out of the README.
func TestUndocumentedValuesFail(t *testing.T) {
	for name, tc := range map[string]struct{ values, err string }{
		"no comment":             {"a: 1\n", "a has no description"},
		"a plain comment":        {"# A note.\na: 1\n", "a has no description"},
		"an empty description":   {"# --\na: 1\n", "a has no description"},
		"in a section":           {"s:\n  # -- A.\n  a: 1\n  b: []\n", "s.b has no description"},
		"an empty mapping":       {"s: {}\n", "s has no description"},
		"a line comment":         {"a: 1 # -- A.\n", "a: a # -- comment describes the key below it"},
		"hidden by a larger one": {"# -- S.\ns:\n  # -- A.\n  a: 1\n", "s is documented as a whole, and so are keys inside it"},
		"hidden deeper":          {"# -- S.\ns:\n  t:\n    # -- A.\n    a: 1\n", "s is documented as a whole"},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := parseValues([]byte(tc.values))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := documentedValues(m); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want one saying %q", err, tc.err)
			}
		})
	}
	m, _ := parseValues([]byte("# A note.\n# -- A, on\n# two lines.\na: \"x|y\"\n# -- S.\ns:\n  b: [1]\n"))
	values, err := documentedValues(m)
	want := []chartValue{{"a", "string", `"x|y"`, "A, on two lines."}, {"s", "object", `{"b":[1]}`, "S."}}
	if err != nil || !slices.Equal(values, want) {
		t.Errorf("documentedValues = %v, %v; want %v", values, err, want)
	}
}

// firstDifference shows the first line where got and want differ.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d is\n\t%s\nand should be\n\t%s", i+1, gl, wl)
		}
	}
	return ""
}

// TestValuesMatchSchema checks that values.yaml and values.schema.json name the same
// keys: a key only in values.yaml would be refused at install time (the schema refuses
// unknown keys), and a key only in the schema is one the chart offers without a
// default or a description. The keys of a free-form object (one whose schema lists no
// properties, such as resources or labels) are the user's; so are those of an object
// whose default is empty (issuerRef), which the schema describes for when it is set.
// Every object whose keys the schema lists must refuse others, as values.yaml's header
// promises.
func TestValuesMatchSchema(t *testing.T) {
	raw, err := os.ReadFile("values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	var walk func(prefix string, v *yaml.Node, s map[string]any)
	walk = func(prefix string, v *yaml.Node, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		if props == nil {
			return
		}
		if s["additionalProperties"] != false {
			where := "the top level"
			if prefix != "" {
				where = strings.TrimSuffix(prefix, ".")
			}
			t.Errorf("values.schema.json lets unknown keys into %s: set its additionalProperties to false", where)
		}
		if v.Kind != yaml.MappingNode || len(v.Content) == 0 {
			return
		}
		inValues := map[string]bool{}
		for i := 0; i < len(v.Content); i += 2 {
			k, child := v.Content[i].Value, v.Content[i+1]
			inValues[k] = true
			p, ok := props[k].(map[string]any)
			if !ok {
				t.Errorf("%s%s is in values.yaml but not in values.schema.json", prefix, k)
				continue
			}
			walk(prefix+k+".", child, p)
		}
		for k := range props {
			if !inValues[k] {
				t.Errorf("%s%s is in values.schema.json but not in values.yaml: give it a default and a %s description there", prefix, k, docMarker)
			}
		}
	}
	walk("", readValues(t), schema)
}
