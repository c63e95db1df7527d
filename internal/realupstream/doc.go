// Package realupstream runs real upstream servers for tokengate's end-to-end tests and
// tells, from each upstream's own point of view, what reached it.
//
// tokengate decides on a request as it understands it; the API behind it acts on the
// request as its framework understands it. Where the two differ (Express matches paths
// case-insensitively and ignores a trailing slash, Tomcat strips ";" path parameters,
// hypercorn turns an `Upgrade: h2c` request into an HTTP/2 connection, Express's
// method-override turns a POST into a DELETE, ...) a request tokengate allowed can reach
// a handler tokengate never meant to allow. The tests that look for such differences
// need the real frameworks, unmodified and in their default configuration, so nothing
// here is a stand-in:
//
//   - [Go]: net/http's ServeMux, in this process.
//   - [Hypercorn]: Debian's hypercorn 0.13 serving a Starlette 0.26 app
//     (e2e/upstreams/testdata/hypercorn), run by /usr/bin/python3.
//   - [Express]: Express 5 with method-override, from npm at the versions that
//     e2e/upstreams/testdata/express/package-lock.json pins, run by node.
//   - [Tomcat]: Debian's embedded Tomcat 10.1 with a servlet app
//     (e2e/upstreams/testdata/tomcat) that javac compiles at test time.
//
// Every upstream has the same routes, each with its framework's default matching:
//
//	GET    /healthz       health
//	GET    /orders/{id}   orders.show
//	POST   /orders        orders.create
//	DELETE /orders/{id}   orders.delete
//	*      /admin/...     admin
//	*      anything else  fallback
//	GET    /ws/push       ws.push (Go only: a WebSocket that pushes and never reads)
//
// Each handler reads the whole body, appends a [Record] of the request as one JSON
// line to a file that [Start] chose, and answers 200 with that record as JSON.
// [Server.Records] reads the file back. A request that the framework answers by itself
// (Go's ServeMux redirecting "/admin" to "/admin/" or to a cleaned path, Tomcat's 400
// for an encoded slash, Starlette's 404 for an absolute-form target) reaches no handler
// and leaves no record: the records say what the application saw. After hypercorn's
// 101 to an h2c upgrade, the upgrade request itself runs as HTTP/2 stream 1, and its
// record may be written after the 101 was read.
//
// The Debian packages come from tools/debs (run it as root); node and npm must be on
// PATH, and [Start] installs the Express app's packages with `npm ci` when
// node_modules does not hold what the lock file pins. A missing piece fails the test
// with what to install: these tests never skip.
//
// [RawRequest] and [H2CSmuggle] send what net/http's client cannot: arbitrary bytes on
// a fresh connection, and an h2c upgrade followed by HTTP/2 requests inside it.
package realupstream
