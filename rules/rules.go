package rules

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"

	"github.com/tokengate/tokengate/middleware"
)

// Limits on what a rule may be. An expression longer or deeper than these is refused
// at load; its evaluation is bounded by the cost limit (WithCostLimit).
const (
	// MaxNameLength bounds a rule's name, which goes into log lines.
	MaxNameLength = 64
	// MaxExprLength bounds an expression, in characters (Unicode code points).
	MaxExprLength = 8192
	// MaxExprDepth bounds the nesting of an expression as the parser sees it
	// (parentheses, calls and operators within one another): CEL's own default is
	// 250.
	MaxExprDepth = 32
	// maxRegexProgram bounds the compiled size of a regular expression (matches()),
	// whether a literal (checked at load) or computed at evaluation.
	maxRegexProgram = 4096
)

// Defaults of the options.
const (
	// DefaultCostLimit bounds what one evaluation of one expression may cost, in
	// cel-go's cost units (about one per basic operation, a tenth per character a
	// string function reads): a few milliseconds at most. Comparing a claim with a
	// constant costs 3; a comprehension over a list claim of 8 KiB, some 25000 at
	// worst. See cost.go for how it is kept.
	DefaultCostLimit = 100_000
	// DefaultClaimsBytes is the size the load-time estimate assumes the claims can
	// reach: the payload of a token of middleware.DefaultMaxBytes.
	DefaultClaimsBytes = middleware.DefaultMaxBytes
	// DefaultRequestBytes is the size it assumes a request's path, host and headers
	// can reach: the sidecar's limit on a request's header (64 KiB).
	DefaultRequestBytes = 64 << 10
)

// Errors, matched with errors.Is on an *Error's Err (or on the error Allow returns,
// for ErrCostLimit).
var (
	// ErrName: a rule's name is empty, too long or has characters other than letters,
	// digits, '.', '_' and '-'.
	ErrName = errors.New("invalid rule name")
	// ErrDuplicateName: two rules of one list have the same name.
	ErrDuplicateName = errors.New("duplicate rule name")
	// ErrSyntax: the expression does not parse, or is too long or too deep.
	ErrSyntax = errors.New("syntax error")
	// ErrType: the expression does not type-check, or its result is not of the type
	// wanted (bool for a rule, string for a value).
	ErrType = errors.New("type error")
	// ErrCostLimit: the expression may cost more than the cost limit: at load, with
	// inputs of the sizes assumed; at evaluation, with inputs larger than that.
	ErrCostLimit = errors.New("cost limit exceeded")
)

// Spec is a rule as the configuration file holds it:
//
//	rules: [{name: tenant, expr: 'claims.tid == "contoso"'}]
type Spec struct {
	// Name names the rule in log lines and in the check command's explanation:
	// 1 to MaxNameLength letters, digits, '.', '_' and '-', unique within its list.
	Name string
	// Expr is a CEL expression over the variables claims and request (see the
	// package documentation).
	Expr string
}

// Error is a rule that does not compile. Compile reports every such rule at once,
// joined (errors.Join); the configuration layer maps Index and Field to the file's key
// (issuers[0].rules[1].expr) and Line and Column to a place in the expression.
type Error struct {
	// Index is the rule's position in its list; -1 for CompileValue.
	Index int
	// Name is the rule's name as written, which may be the problem.
	Name string
	// Field is what is wrong: "name" or "expr".
	Field string
	// Line and Column place the first problem in Expr (both from 1, the column in
	// characters); zero when the problem has no place (the name, the result type).
	Line, Column int
	// Err is the problem; it wraps one of ErrName, ErrDuplicateName, ErrSyntax,
	// ErrType and ErrCostLimit.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Index >= 0 {
		fmt.Fprintf(&b, "rule %d ", e.Index)
	}
	fmt.Fprintf(&b, "%q: %s: ", e.Name, e.Field)
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", e.Line, e.Column)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Option adjusts how expressions are compiled and bounded.
type Option func(*settings)

type settings struct {
	costLimit    uint64
	claimsBytes  uint64
	requestBytes uint64
	claimsOnly   bool
}

// WithCostLimit bounds the cost of one evaluation of one expression. An expression is
// refused at load when its worst case, for inputs as large as WithClaimsBytes and
// WithRequestBytes say, may exceed the limit; an evaluation with larger inputs is
// estimated again at their size, and denied with ErrCostLimit (reason rule) when the
// limit could then be exceeded. This defaults to DefaultCostLimit; zero keeps the
// default.
func WithCostLimit(limit uint64) Option {
	return func(s *settings) {
		if limit > 0 {
			s.costLimit = limit
		}
	}
}

// WithClaimsBytes is how large the claims can get, in bytes of JSON, for the
// load-time estimate: the payload of the largest token the Gate accepts
// (Tokens.MaxBytes), or the largest introspection answer. Evaluations with larger
// claims are estimated again (WithCostLimit). This defaults to DefaultClaimsBytes;
// zero or less keeps the default.
func WithClaimsBytes(n int) Option {
	return func(s *settings) {
		if n > 0 {
			s.claimsBytes = uint64(n)
		}
	}
}

// WithRequestBytes is how large a request's path, host and header can get, for the
// load-time estimate: the server's http.Server.MaxHeaderBytes. Evaluations with
// larger requests are estimated again (WithCostLimit). This defaults to
// DefaultRequestBytes; zero or less keeps the default.
func WithRequestBytes(n int) Option {
	return func(s *settings) {
		if n > 0 {
			s.requestBytes = uint64(n)
		}
	}
}

// ClaimsOnly refuses, at load, an expression that reads request (ErrType, placed at
// where it does): for a value computed from the token alone, such as an identity
// header that must not depend on what the client sent. Such an expression is
// evaluated with a nil request as well as with one.
func ClaimsOnly() Option {
	return func(s *settings) { s.claimsOnly = true }
}

func newSettings(opts []Option) settings {
	s := settings{costLimit: DefaultCostLimit, claimsBytes: DefaultClaimsBytes, requestBytes: DefaultRequestBytes}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// env is the one CEL environment every expression is compiled in: building one is
// costly (milliseconds), and nothing in it depends on the options.
var env = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Types(requestDescriptor{}),
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("request", cel.ObjectType(requestTypeName)),
		// Claims that are JSON numbers are doubles: claims.age >= 18 compares a
		// double with an int.
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		cel.ParserExpressionSizeLimit(MaxExprLength),
		cel.ParserRecursionLimit(MaxExprDepth),
		cel.RegexProgramSizeLimit(maxRegexProgram),
		// Refuse at load what would fail at every evaluation: bad regular
		// expressions, timestamp and duration literals, mixed-type list literals.
		cel.ExtendedValidations(),
		ext.Strings(),
		ext.Sets(),
	)
})

// compiled is what rules and values share: a checked program, what it reads, and
// how its cost is kept within the limit (cost.go).
type compiled struct {
	name, expr string
	prg        cel.Program
	checked    *cel.Ast
	use        usage

	claimsBytes, requestBytes uint64 // the sizes the load-time estimate assumed
	limit                     uint64 // the cost limit
	claimsOnly                bool   // it reads no request (ClaimsOnly): a nil one will do
	// measureClaims and measureRequest say what an evaluation must measure to know
	// that the estimate holds (plan).
	measureClaims, measureRequest bool
}

// compile checks spec.Expr and builds its program; want is the result type.
func compile(index int, spec Spec, want *types.Type, s settings) (*compiled, []error) {
	e, err := env()
	if err != nil {
		return nil, []error{fmt.Errorf("rules: the CEL environment: %w", err)}
	}
	fail := func(field string, err error) []error {
		return []error{&Error{Index: index, Name: spec.Name, Field: field, Err: err}}
	}
	if strings.TrimSpace(spec.Expr) == "" {
		return nil, fail("expr", fmt.Errorf("%w: the expression is empty", ErrSyntax))
	}
	parsed, iss := e.Parse(spec.Expr)
	if iss.Err() != nil {
		return nil, issuesError(index, spec, ErrSyntax, iss)
	}
	checked, iss := e.Check(parsed)
	if iss.Err() != nil {
		return nil, issuesError(index, spec, ErrType, iss)
	}
	if got := checked.OutputType(); !got.IsExactType(want) {
		hint := ""
		switch {
		case want == types.BoolType && got == types.DynType:
			hint = " (a claim's type is known only at evaluation: compare it, as in claims.admin == true)"
		case want == types.StringType && got == types.DynType:
			hint = " (a claim's type is known only at evaluation: convert it, as in string(claims.tid))"
		}
		return nil, fail("expr", fmt.Errorf("%w: the expression is of type %s, not %s%s", ErrType, got, want, hint))
	}
	u := analyze(checked)
	var errs []error
	for _, h := range u.upperHeaders {
		errs = append(errs, &Error{Index: index, Name: spec.Name, Field: "expr", Line: h.line, Column: h.col,
			Err: fmt.Errorf("%w: request.headers has lower-case names: %q is never there; write %q", ErrType, h.name, lower(h.name))})
	}
	if s.claimsOnly && u.request != 0 {
		line, col := u.requestAt.line, u.requestAt.col
		if line <= 0 {
			line, col = 0, 0
		}
		errs = append(errs, &Error{Index: index, Name: spec.Name, Field: "expr", Line: line, Column: col,
			Err: fmt.Errorf("%w: request cannot be read here: the expression may read only claims", ErrType)})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	p := &compiled{name: spec.Name, expr: spec.Expr, checked: checked, use: u,
		claimsBytes: s.claimsBytes, requestBytes: s.requestBytes, limit: s.costLimit, claimsOnly: s.claimsOnly}
	cost, err := p.estimate(s.claimsBytes, s.requestBytes)
	if err != nil {
		return nil, fail("expr", fmt.Errorf("%w: its cost cannot be estimated: %w", ErrCostLimit, err))
	}
	if cost > s.costLimit {
		return nil, fail("expr", fmt.Errorf("%w: its cost may reach %s (with claims of %d bytes and requests of %d), over the limit of %d",
			ErrCostLimit, costString(cost), s.claimsBytes, s.requestBytes, s.costLimit))
	}
	if err := p.plan(); err != nil {
		return nil, fail("expr", fmt.Errorf("%w: its cost cannot be estimated: %w", ErrCostLimit, err))
	}
	if p.prg, err = e.Program(checked, cel.EvalOptions(cel.OptOptimize)); err != nil {
		return nil, fail("expr", fmt.Errorf("%w: %w", ErrType, err))
	}
	return p, nil
}

// issuesError turns cel-go's issues into one *Error per problem, placed in the
// expression. Of syntax errors only the first is kept: the parser's attempts to
// recover make the others.
func issuesError(index int, spec Spec, kind error, iss *cel.Issues) []error {
	var errs []error
	for _, ce := range iss.Errors() {
		msg := strings.TrimSuffix(ce.Message, " (in container '')")
		msg = strings.TrimPrefix(msg, "Syntax error: ")
		line, col := ce.Location.Line(), ce.Location.Column()+1
		if line <= 0 {
			line, col = 0, 0
		}
		errs = append(errs, &Error{Index: index, Name: spec.Name, Field: "expr", Line: line, Column: col,
			Err: fmt.Errorf("%w: %s", kind, msg)})
		if kind == ErrSyntax {
			break
		}
	}
	if len(errs) == 0 { // cannot happen: Err() is non-nil only with errors
		errs = append(errs, &Error{Index: index, Name: spec.Name, Field: "expr", Err: fmt.Errorf("%w: %s", kind, iss)})
	}
	return errs
}

// validName reports whether a name is fit for log lines.
func validName(name string) bool {
	if name == "" || len(name) > MaxNameLength {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func checkName(index int, name string) error {
	if !validName(name) {
		problem := "must be 1 to %d letters, digits, '.', '_' or '-'"
		if name == "" {
			problem = "is empty: every rule needs a name (it names the rule in log lines), of at most %d letters, digits, '.', '_' or '-'"
		}
		return &Error{Index: index, Name: name, Field: "name", Err: fmt.Errorf("%w: "+problem, ErrName, MaxNameLength)}
	}
	return nil
}

// Rule is a compiled CEL rule: a middleware.Rule. It is safe for concurrent use.
type Rule struct{ c *compiled }

var _ middleware.Rule = (*Rule)(nil)

// Compile compiles and type-checks a list of rules (one issuer's or one route's),
// reporting every problem at once: each is an *Error, joined with errors.Join. Every
// expression must be of type bool and within the cost limit.
func Compile(specs []Spec, opts ...Option) ([]middleware.Rule, error) {
	s := newSettings(opts)
	var errs []error
	out := make([]middleware.Rule, 0, len(specs))
	seen := make(map[string]int, len(specs))
	for i, spec := range specs {
		if err := checkName(i, spec.Name); err != nil {
			errs = append(errs, err)
		} else if first, dup := seen[spec.Name]; dup {
			errs = append(errs, &Error{Index: i, Name: spec.Name, Field: "name",
				Err: fmt.Errorf("%w: rule %d has this name too", ErrDuplicateName, first)})
		} else {
			seen[spec.Name] = i
		}
		c, cerrs := compile(i, spec, types.BoolType, s)
		errs = append(errs, cerrs...)
		if c != nil {
			out = append(out, &Rule{c})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Name is the rule's name.
func (r *Rule) Name() string { return r.c.name }

// Expr is the rule's expression, as written.
func (r *Rule) Expr() string { return r.c.expr }

// Claims names the claims the rule reads, sorted; all is true when it reads them in a
// way that cannot be named at load (iterating over claims, a computed name). A Gate
// whose cache keeps only some claims (middleware.Tokens.KeepClaims) must keep these,
// or the rule sees them missing and denies.
func (r *Rule) Claims() (names []string, all bool) {
	return slices.Clone(r.c.use.claims), r.c.use.allClaims
}

// Allow evaluates the rule. A false rule, and any error, deny the request: a claim
// the expression reads that the token does not have (test with has(claims.x)), a
// claim of another type than the expression needs, inputs so large that the rule
// could cost more than the limit (ErrCostLimit).
func (r *Rule) Allow(req *http.Request, c *middleware.Claims) (bool, error) {
	out, err := r.c.eval(req, c)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok { // the checker said bool; never trust that with the decision
		return false, fmt.Errorf("rules: %s: the result is a %s, not a bool", r.c.name, out.Type().TypeName())
	}
	return bool(b), nil
}

// ClaimsUsed is the union of what the rules read of the claims (see Rule.Claims): a
// rule that this package did not compile counts as reading all of them.
func ClaimsUsed(rs ...middleware.Rule) (names []string, all bool) {
	for _, r := range rs {
		cr, ok := r.(*Rule)
		if !ok {
			return nil, true
		}
		all = all || cr.c.use.allClaims
		names = append(names, cr.c.use.claims...)
	}
	slices.Sort(names)
	return slices.Compact(names), all
}
