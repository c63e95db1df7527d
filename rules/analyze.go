package rules

import (
	"slices"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// usage is what a checked expression reads, found in its syntax tree.
type usage struct {
	claims       []string       // claims read by a constant name: claims.tid, claims["tid"], "tid" in claims
	allClaims    bool           // claims read otherwise
	request      fields         // the request's fields it reads
	requestAt    place          // where it first reads request (when request is not 0)
	ranges       map[int64]bool // the expressions comprehensions iterate over
	dynSelects   uint64         // the longest chain of selections on dyn values: claims.a.b.c is 2
	upperHeaders []place        // request.headers["X-Tenant"]: a name that can never be there
}

// fields is a set of the request's fields.
type fields uint8

const (
	fieldMethod fields = 1 << iota
	fieldPath
	fieldHost
	fieldHeaders
	allFields = fieldMethod | fieldPath | fieldHost | fieldHeaders
)

var fieldNames = map[string]fields{"method": fieldMethod, "path": fieldPath, "host": fieldHost, "headers": fieldHeaders}

type place struct {
	name      string
	line, col int
}

func analyze(checked *cel.Ast) usage {
	a := checked.NativeRep()
	root := ast.NavigateAST(a)
	u := usage{ranges: map[int64]bool{}}
	for _, id := range ast.MatchDescendants(root, ast.KindMatcher(ast.IdentKind)) {
		switch strings.TrimPrefix(id.AsIdent(), ".") {
		case "claims":
			if name, ok := constantMember(id); ok {
				u.claims = append(u.claims, name)
			} else {
				u.allClaims = true
			}
		case "request":
			if u.request == 0 {
				loc := a.SourceInfo().GetStartLocation(id.ID())
				u.requestAt = place{name: "request", line: loc.Line(), col: loc.Column() + 1}
			}
			// A comprehension variable of the same name makes this over-cautious,
			// never wrong.
			if p, ok := id.Parent(); ok && p.Kind() == ast.SelectKind && fieldNames[p.AsSelect().FieldName()] != 0 {
				u.request |= fieldNames[p.AsSelect().FieldName()]
			} else {
				u.request = allFields
			}
		}
	}
	for _, sel := range ast.MatchDescendants(root, ast.KindMatcher(ast.SelectKind)) {
		n := uint64(0)
		for e := ast.Expr(sel); e.Kind() == ast.SelectKind && !e.AsSelect().IsTestOnly() &&
			a.GetType(e.AsSelect().Operand().ID()).Kind() == types.DynKind; e = e.AsSelect().Operand() {
			n++
		}
		u.dynSelects = max(u.dynSelects, n)
	}
	for _, c := range ast.MatchDescendants(root, ast.KindMatcher(ast.ComprehensionKind)) {
		u.ranges[c.AsComprehension().IterRange().ID()] = true
	}
	slices.Sort(u.claims)
	u.claims = slices.Compact(u.claims)
	for _, sel := range ast.MatchDescendants(root, ast.KindMatcher(ast.SelectKind)) {
		s := sel.AsSelect()
		if s.FieldName() != "headers" || s.Operand().Kind() != ast.IdentKind ||
			strings.TrimPrefix(s.Operand().AsIdent(), ".") != "request" {
			continue
		}
		name, ok := constantMember(sel)
		if !ok || lower(name) == name {
			continue
		}
		loc := a.SourceInfo().GetStartLocation(sel.ID())
		if p, ok := sel.Parent(); ok {
			loc = a.SourceInfo().GetStartLocation(p.ID())
		}
		u.upperHeaders = append(u.upperHeaders, place{name: name, line: loc.Line(), col: loc.Column() + 1})
	}
	return u
}

// constantMember is the member name e is read with when that is a constant: e.name,
// has(e.name), e["name"] and "name" in e.
func constantMember(e ast.NavigableExpr) (string, bool) {
	p, ok := e.Parent()
	if !ok {
		return "", false
	}
	switch p.Kind() {
	case ast.SelectKind:
		return p.AsSelect().FieldName(), true
	case ast.CallKind:
		call := p.AsCall()
		args := call.Args()
		if len(args) != 2 {
			return "", false
		}
		var key ast.Expr
		switch call.FunctionName() {
		case operators.Index, operators.OptIndex:
			if args[0].ID() == e.ID() {
				key = args[1]
			}
		case operators.In:
			if args[1].ID() == e.ID() {
				key = args[0]
			}
		}
		if key != nil && key.Kind() == ast.LiteralKind {
			if s, ok := key.AsLiteral().(types.String); ok {
				return string(s), true
			}
		}
	}
	return "", false
}
