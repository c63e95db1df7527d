package middleware

import (
	"fmt"
	"slices"
	"strings"
)

// PathStyle is how the API behind the Gate reads a request's method and path when it
// routes it. The Gate decides on every reading the style names, so that the route the
// API serves is never one whose policy the request fails: a token without orders:read
// must not reach "GET /orders/{id}" as GET /ORDERS/1 on an API that matches paths in
// any case, while the route table saw only a catch-all. docs/configuration.md has the
// table of frameworks and their styles.
//
// Every style reads the method in upper case as well as sent, and refuses what no
// style can read safely: an encoded slash or backslash, a dot segment however it is
// spelt, an empty segment, a fragment ('#') in the request target, CONNECT.
type PathStyle string

const (
	// PathsStrict, the default, assumes nothing of the API. The path as sent must match
	// a route, and the request must also meet the policy of every route that its other
	// common readings match: the path in lower case (Express, ASP.NET Core), the
	// trailing slash removed or added (Express, ASP.NET Core, Rails, Laravel, Spring
	// before 6). A path with ';' is refused: servlet containers drop ";parameters"
	// before routing (use PathsServlet). Like every style, it also reads the method in
	// upper case (Starlette, werkzeug, ASP.NET Core do).
	PathsStrict PathStyle = "strict"
	// PathsExact is for an API that routes the method and path exactly as sent, and
	// redirects rather than guesses when they differ from a route: Go's net/http
	// ServeMux, chi, gorilla/mux, Gin and Echo (trailing-slash redirects), Starlette
	// and FastAPI, Flask, Django. ';' is an ordinary character to them.
	PathsExact PathStyle = "exact"
	// PathsExpress is for an API that matches paths in any case and with or without a
	// trailing slash: Express 4 and 5 (and NestJS on Express), Koa's router, ASP.NET
	// Core. Routes are matched in lower case, and the request must meet the policy of
	// the route with and without its trailing slash. ';' is an ordinary character.
	PathsExpress PathStyle = "express"
	// PathsServlet is for a Jakarta servlet container (Tomcat, Jetty, Undertow) and
	// what runs on it (Spring MVC, JAX-RS): ";parameters" are removed from every
	// segment before the path is matched (/orders;jsessionid=1/7 is /orders/7), and the
	// request must meet the policy of the route with and without its trailing slash.
	PathsServlet PathStyle = "servlet"
)

// pathStyles lists the styles, the default first.
var pathStyles = [...]PathStyle{PathsStrict, PathsExact, PathsExpress, PathsServlet}

// PathStyles returns the styles, the default first. The slice is the caller's own.
func PathStyles() []PathStyle { return slices.Clone(pathStyles[:]) }

// What a style does with ';' in a path.
const (
	semicolonsKeep = iota
	semicolonsRefuse
	semicolonsStrip
)

// readingRules are the readings of a style: how the primary one is made (the one that
// must match a route) and which others are matched too.
type readingRules struct {
	fold        bool // match the path in lower case against the folded table
	foldPrimary bool // ...as the primary reading (the API never reads it as sent)
	toggleSlash bool // also with the trailing slash toggled
	upperMethod bool // also with the method in upper case
	semicolons  int
}

// Every style reads a method in lower case in upper case too: Starlette (and so
// FastAPI), werkzeug (Flask) and ASP.NET Core do, and it costs nothing for the methods
// clients send, which are in upper case.
func rulesOf(s PathStyle) readingRules {
	switch s {
	case PathsExact:
		return readingRules{upperMethod: true}
	case PathsExpress:
		return readingRules{fold: true, foldPrimary: true, toggleSlash: true, upperMethod: true}
	case PathsServlet:
		return readingRules{toggleSlash: true, upperMethod: true, semicolons: semicolonsStrip}
	}
	return readingRules{fold: true, toggleSlash: true, upperMethod: true, semicolons: semicolonsRefuse}
}

func validPathStyle(s PathStyle) error {
	for _, k := range pathStyles {
		if s == k {
			return nil
		}
	}
	names := make([]string, len(pathStyles))
	for i, k := range pathStyles {
		names[i] = string(k)
	}
	return fmt.Errorf("%q is not a path style: use %s", s, strings.Join(names, ", "))
}
