// Package rules compiles CEL (Common Expression Language) rules over a request and
// its verified claims into middleware.Rules: the conditions a request must meet
// beyond its scopes, per issuer (middleware.Issuer.Rules) and per route
// (middleware.Route.Rules).
//
//	rs, err := rules.Compile([]rules.Spec{
//		{Name: "tenant", Expr: `claims.tid == "contoso"`},
//		{Name: "own-account", Expr: `request.headers["x-account"] == claims.sub`},
//	})
//	...
//	cfg.Issuers[0].Rules = rs
//
// A rule that is false, or that cannot be evaluated, denies the request with 403 and
// reason "rule"; the Gate logs the rule's name (never as a metric label).
//
// # Variables
//
// An expression sees two variables:
//
//   - claims, a map(string, dyn): the token's claims as JSON decodes them (strings,
//     doubles, bools, null, lists, maps). A JSON number is a double: claims.age >= 18
//     and claims.age == 18 compare across numeric types, but int(claims.age) is needed
//     where an int is (a list index, timestamp(int(claims.iat))). Only the claims the
//     Gate keeps are there (middleware.Tokens.KeepClaims: see ClaimsUsed).
//   - request, with method (string), path (string: the URL's path, decoded), host
//     (string: as the client sent it) and headers (map(string, string): the names in
//     lower case, the values of a header sent more than once joined with ", ").
//
// # Missing claims
//
// Reading a claim that the token does not have is an error, which denies the
// request: claims.tid == "contoso" denies a token without tid. Test presence with
// has(): has(claims.tid) && claims.tid == "contoso", or !has(claims.act) to refuse
// delegated tokens. The same holds for headers: "x-tenant" in request.headers tests
// one, request.headers["x-tenant"] is an error without it. A claim of another type
// than the expression needs is an error too (claims.age >= 18 with "age":"18").
//
// # Functions
//
// Besides CEL's standard functions and macros (size, in, startsWith, endsWith,
// contains, matches with RE2 syntax, has, exists, all, exists_one, filter, map,
// timestamp, duration), expressions can use cel-go's string extensions (lowerAscii,
// upperAscii, split, join, replace, trim, indexOf, substring, format...) and its
// sets extension (sets.contains, sets.intersects, sets.equivalent).
//
// # Load-time checks
//
// Compile parses and type-checks every expression, and refuses, naming the rule by
// index and name (an *Error, with the line and column in the expression): a syntax
// error, an unknown variable or request field, a result that is not a bool (a bare
// claims.admin is dyn: write claims.admin == true), a header name with upper-case
// letters, an invalid regular expression literal, an expression longer than
// MaxExprLength or deeper than MaxExprDepth, and an expression whose cost may exceed
// the cost limit.
//
// # Cost
//
// Every evaluation is bounded by a cost limit (DefaultCostLimit, or WithCostLimit),
// in cel-go's cost units. At load, each expression's worst-case cost is estimated
// for claims and requests as large as WithClaimsBytes and WithRequestBytes say they
// can get, and refused above the limit: claims.groups.all(g, claims.groups.all(h,
// ...)) is refused, claims.groups.exists(g, g.startsWith("team-")) is not. At
// evaluation, inputs within those sizes need nothing more; larger ones are estimated
// again at their actual size, and denied (ErrCostLimit) if the bound then exceeds the
// limit. A rule's evaluation never runs past the limit.
//
// # Values
//
// CompileValue compiles an expression of type string, such as claims.groups.join(","),
// for values computed from the claims and the request, such as a header for the
// upstream. With ClaimsOnly, an expression that reads request is refused at load,
// and the value is computed from the claims alone (Eval with a nil request).
package rules
