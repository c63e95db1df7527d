// Package certfile serves a TLS certificate from a certificate file and a key file, and
// reads them again when either changes: a certificate renewed by cert-manager (a new
// Secret volume version) is served without a restart. The injector's webhook server
// and the sidecar's TLS listener use it.
package certfile
