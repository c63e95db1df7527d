// Package policy is tokengate's configuration file (docs/configuration.md): the YAML
// that `tokengate sidecar`, `tokengate check`, `tokengate demo` and `tokengate authz`
// run, loaded the same way by Go services. It turns the file into a
// middleware.Config, the identity headers an upstream is given (Identity), and what the
// sidecar and the decision service for gateways need besides.
//
// Importing policy brings a YAML parser; package middleware alone does not.
//
// # Loading
//
// Load and LoadFile read the file strictly: unknown keys are errors, so that a
// misspelt "audience" never silently turns a check off, and every problem comes back
// at once, as *Problem values sorted by line, each naming the file's key and its line.
// What a file must hold depends on what it is loaded for (Purpose): the sidecar needs
// an upstream, `tokengate authz` needs authz.listen.
//
//	l, err := policy.LoadFile("tokengate.yaml", policy.ForCheck, policy.Overrides{})
//	if err != nil { ... } // every problem of the file, one per line
//	gate, err := middleware.New(ctx, l.Gate, middleware.Options{})
//
// # Watching
//
// A Go service runs the file with reload: Watch loads it, builds the Gate, and
// replaces the Gate, between two requests, when the file changes (an edit in place, or
// a Kubernetes ConfigMap update, which swaps a symlink). A file that does not load is
// refused, logged with every problem and counted, and the running Gate stays.
//
//	w, err := policy.Watch(ctx, "tokengate.yaml", policy.WatchOptions{Registerer: reg})
//	if err != nil { ... }
//	defer w.Close()
//	http.ListenAndServe(":8080", w.Handler(mux))
//
// FileWatch is the detection alone (a read by path at an interval, compared by
// SHA-256), which the sidecar shares.
//
// # Identity headers
//
// Loaded.Identity returns the headers forward.claims and forward.values name: Set
// writes them from verified claims, StripInbound removes every spelling of them (and anything under
// X-Auth-) that a client sent, and Check refuses claims that cannot travel in a
// header. The sidecar forwards them to the upstream; a gateway's decision service
// answers with the same ones.
package policy
