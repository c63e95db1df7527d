package rules

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/tokengate/tokengate/middleware"
)

// How the cost limit is kept.
//
// Not by cel-go's runtime cost tracker (cel.CostLimit): it costs about four times
// what a simple rule's evaluation costs (1.1 µs against 0.26), and in cel-go v0.31
// its time grows with the square of a comprehension's length (it searches a stack
// that grows with every iteration: an exists over 40000 items, stopped at 100000
// cost units, takes half a second).
//
// By the load-time estimate instead (checker.Cost, the same cost model): an upper
// bound of an evaluation's cost for every input no larger than the sizes it assumes.
// An evaluation reads the lengths of what the expression reads of its inputs, when
// the bound depends on them at all (plan), and runs the expression when they are
// within those sizes. Larger inputs (claims from introspection, a Gate behind a larger
// header limit) are estimated again at their actual size: the expression runs when
// the bound is still within the limit, and is denied with ErrCostLimit, without
// running, when it is not. FuzzEval checks that cel-go's tracker never counts more
// than the bound.

// unbounded is an input size no request reaches.
const unbounded = 1 << 40

// sizes tells the estimate how large the inputs can get, where CEL cannot know it, in
// terms of what measure measures. From the claims, every string has at most as many
// characters as the claims have bytes of JSON, every list half as many items ("0,"
// is two bytes), every map a fifth as many entries (`"":0,` is five); from the
// request, every string at most as many characters as the request has bytes, and the
// header a quarter as many names ("a:\r\n").
type sizes struct {
	claims, request uint64
	ranges          map[int64]bool // what comprehensions iterate over: lists or maps
}

func (s sizes) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	path := n.Path()
	if len(path) == 0 {
		switch n.Type().Kind() {
		case types.BoolKind, types.IntKind, types.UintKind, types.DoubleKind, types.NullTypeKind,
			types.TypeKind, types.TimestampKind, types.DurationKind:
			return &checker.SizeEstimate{Min: 1, Max: 1} // what the runtime counts for a scalar
		}
		return nil
	}
	var bound uint64
	switch path[0] {
	case "claims":
		switch {
		case len(path) == 1:
			bound = s.claims / 5
		case s.ranges[n.Expr().ID()]:
			bound = s.claims / 2
		default:
			bound = s.claims
		}
	case "request":
		bound = s.request
		if len(path) == 2 && path[1] == "headers" {
			bound = s.request / 4
		}
	default:
		return nil
	}
	// At least 1: the runtime counts an error (a missing claim) as of size 1.
	return &checker.SizeEstimate{Min: 0, Max: max(bound, 1)}
}

// EstimateCallCost gives the size of a scalar converted to a string, which CEL does
// not know: at most 64 characters (-1.7976931348623157e+308 is 24, a timestamp 35),
// for the cost the runtime counts for a conversion (1).
func (sizes) EstimateCallCost(_, overloadID string, _ *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
	switch overloadID {
	case overloads.BoolToString, overloads.IntToString, overloads.UintToString, overloads.DoubleToString,
		overloads.TimestampToString, overloads.DurationToString:
		return &checker.CallEstimate{
			CostEstimate: checker.CostEstimate{Min: 1, Max: 1},
			ResultSize:   &checker.SizeEstimate{Min: 0, Max: 64},
		}
	}
	return nil
}

// estimate is the most an evaluation can cost with inputs of the sizes given.
//
// cel-go v0.31's estimate leaves out the selection of a field of a dyn value
// (claims.a.b: .b), which its runtime counts as 1; each chain of k such selections
// hangs off a variable or selection it counts at 1 or more, so multiplying by 1+k
// keeps the bound an upper one.
func (p *compiled) estimate(claims, request uint64) (uint64, error) {
	e, err := env()
	if err != nil {
		return 0, err
	}
	est, err := e.EstimateCost(p.checked, sizes{claims: claims, request: request, ranges: p.use.ranges})
	if err != nil {
		return 0, err
	}
	k := p.use.dynSelects
	if est.Max > ^uint64(0)/(1+k) {
		return ^uint64(0), nil
	}
	return est.Max * (1 + k), nil
}

// plan decides what an evaluation must measure: nothing when the bound holds for
// inputs of any size (claims.tid == "contoso" compares with a constant); else the
// claims alone when the bound holds for a request of any size (a few look-ups), the
// request alone when it holds for claims of any size, or both.
func (p *compiled) plan() error {
	for _, c := range []struct{ claims, request bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		cs, rs := uint64(unbounded), uint64(unbounded)
		if c.claims {
			cs = p.claimsBytes
		}
		if c.request {
			rs = p.requestBytes
		}
		cost, err := p.estimate(cs, rs)
		if err != nil {
			return err
		}
		if cost <= p.limit {
			p.measureClaims, p.measureRequest = c.claims, c.request
			return nil
		}
	}
	p.measureClaims, p.measureRequest = true, true // what compile checked
	return nil
}

var (
	errNoRequest = errors.New("no request")
	errNoClaims  = errors.New("no claims")
)

// noRequest stands for the nil request of an expression that does not read request
// (one compiled ClaimsOnly): it is never read.
var noRequest = &http.Request{}

// eval evaluates the expression, within the cost limit.
func (p *compiled) eval(req *http.Request, c *middleware.Claims) (ref.Val, error) {
	if req == nil {
		if !p.claimsOnly {
			return nil, fmt.Errorf("rules: %s: %w", p.name, errNoRequest)
		}
		req = noRequest
	}
	if c == nil {
		return nil, fmt.Errorf("rules: %s: %w", p.name, errNoClaims)
	}
	if p.measureClaims || p.measureRequest {
		cs, rs := uint64(unbounded), uint64(unbounded)
		if p.measureClaims {
			cs = p.claimsSize(c)
		}
		if p.measureRequest {
			rs = p.requestSize(req)
		}
		if (p.measureClaims && cs > p.claimsBytes) || (p.measureRequest && rs > p.requestBytes) {
			if err := p.fits(cs, rs); err != nil {
				return nil, err
			}
		}
	}
	out, _, err := p.prg.Eval(newActivation(req, claimsMap(c)))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// fits estimates the expression's cost again for inputs of the sizes given.
func (p *compiled) fits(claims, request uint64) error {
	cost, err := p.estimate(claims, request)
	if err != nil {
		return fmt.Errorf("rules: %s: %w: %w", p.name, ErrCostLimit, err)
	}
	if cost > p.limit {
		return fmt.Errorf("rules: %s: %w: with claims of %s bytes and a request of %s, it may cost %s, over the limit of %d",
			p.name, ErrCostLimit, sizeString(claims), sizeString(request), costString(cost), p.limit)
	}
	return nil
}

func costString(c uint64) string {
	if c == ^uint64(0) {
		return "any amount"
	}
	return fmt.Sprint(c)
}

func sizeString(n uint64) string {
	if n >= unbounded {
		return "any number of"
	}
	return fmt.Sprint(n)
}

// claimsSize measures the claims as sizes assumes them: the bytes of JSON of the
// claims the expression reads by name (the longest), or of all of them.
func (p *compiled) claimsSize(c *middleware.Claims) uint64 {
	var n uint64
	if p.use.allClaims {
		n = 2 // {}
		for k, v := range c.Raw {
			n += uint64(len(k) + len(v) + 4) // "k":v,
		}
		return n
	}
	for _, name := range p.use.claims {
		n = max(n, uint64(len(c.Raw[name])))
	}
	return n
}

// requestSize measures the request as sizes assumes it: the longest of the path,
// host, method and header (as "name: value\r\n" lines) that the expression reads.
func (p *compiled) requestSize(r *http.Request) uint64 {
	var n uint64
	f := p.use.request
	if f&fieldMethod != 0 {
		n = uint64(len(r.Method))
	}
	if f&fieldHost != 0 {
		n = max(n, uint64(len(r.Host)))
	}
	if f&fieldPath != 0 && r.URL != nil {
		n = max(n, uint64(len(r.URL.Path)))
	}
	if f&fieldHeaders != 0 {
		var h uint64
		for k, vs := range r.Header {
			h += uint64(len(k) + 4) // "k: \r\n"
			for _, v := range vs {
				h += uint64(len(v) + 2) // ", " when joined
			}
		}
		n = max(n, h)
	}
	return n
}
