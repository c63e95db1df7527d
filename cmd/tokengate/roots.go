package main

// The image tokengate ships in is empty but for the binary (docs/install.md): it has no
// CA bundle, and Go finds no system roots there, so an issuer with a public certificate
// could not be fetched over https. This package registers Mozilla's roots, as the Go
// team publishes them, as the fallback Go uses only when the system has none: a bundle
// mounted at the usual place, or named by SSL_CERT_FILE, still wins, and caFile still
// adds a private CA.
import _ "golang.org/x/crypto/x509roots/fallback"
