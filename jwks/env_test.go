package jwks_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// Tests here read process-wide settings that a process reads once (its system roots,
// its proxy environment), so each runs its checks in a child process of the test binary,
// started with the environment it needs.

// childRootsEnv, in the environment of a child test process, names the PEM file that
// the child's SSL_CERT_FILE also names.
const childRootsEnv = "TOKENGATE_JWKS_TEST_SYSTEM_ROOTS"

// childProxyEnv, in the environment of a child test process, says it is the child of
// TestKeysAreFetchedThroughTheEnvironmentsProxy.
const childProxyEnv = "TOKENGATE_JWKS_TEST_PROXY"

// runChild runs the test named test in a child process with env added to this
// process's environment.
func runChild(t *testing.T, test string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
}

func TestKeysAreFetchedThroughTheEnvironmentsProxy(t *testing.T) {
	// HTTP_PROXY (and HTTPS_PROXY, NO_PROXY) apply to key fetches, as they do to any Go
	// HTTP client: a cluster whose egress goes through a proxy needs it. The issuer here
	// is http://0.0.0.0:1, which nothing serves: only the proxy can answer for it (and a
	// client that ignored the proxy dials this machine only). Loopback names are never
	// proxied, so this one is not loopback, with insecureHTTP.
	if os.Getenv(childProxyEnv) != "" {
		set, err := jwks.New(context.Background(), jwks.Config{
			Issuer: "http://0.0.0.0:1", JWKSURI: "http://0.0.0.0:1/jwks", InsecureHTTP: true,
		}, jwks.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer set.Close()
		if err := set.Refresh(context.Background()); err != nil {
			t.Fatalf("fetch through HTTP_PROXY: %v", err)
		}
		return
	}
	t.Parallel()
	keys := lightServer(t)
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Host != "0.0.0.0:1" || r.URL.Path != "/jwks" {
			http.Error(w, "not proxied here", http.StatusBadGateway)
			return
		}
		proxied.Add(1)
		_, _ = w.Write(keys.JWKS())
	}))
	t.Cleanup(proxy.Close)
	runChild(t, "TestKeysAreFetchedThroughTheEnvironmentsProxy", childProxyEnv+"=1",
		"HTTP_PROXY="+proxy.URL, "http_proxy="+proxy.URL, "NO_PROXY=", "no_proxy=")
	if proxied.Load() == 0 {
		t.Fatal("the proxy saw no JWKS request")
	}
}

// TestCAFileAddsToSystemRoots: caFile is trusted in addition to the system roots, never
// instead of them, so that naming a private CA for an issuer does not break one whose
// certificate chains to a public root; and where the system roots cannot be read, caFile
// alone still works. A process reads its
// system roots once, so each case runs in a child process of this test binary, with
// SSL_CERT_FILE naming the certificate of the test server (httptest's, the same in
// every process) or something that is not a certificate file.
func TestCAFileAddsToSystemRoots(t *testing.T) {
	switch file := os.Getenv(childRootsEnv); file {
	case "":
	case "none":
		srv := lightServer(t, jwkstest.WithTLS())
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, srv.CertPEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		set := newSet(t, srv, func(c *jwks.Config) { c.CAFile = ca })
		if err := set.Refresh(context.Background()); err != nil {
			t.Fatalf("system roots unreadable, a server that caFile trusts: %v", err)
		}
		return
	default:
		srv := lightServer(t, jwkstest.WithTLS())
		if pemBytes, err := os.ReadFile(file); err != nil || !bytes.Equal(pemBytes, srv.CertPEM()) {
			t.Fatalf("the system roots of this child are not the test server's certificate (%v)", err)
		}
		set := newSet(t, srv, func(c *jwks.Config) { c.CAFile = writeOtherCA(t) })
		if err := set.Refresh(context.Background()); err != nil {
			t.Fatalf("with caFile set, a server that a system root trusts: %v", err)
		}
		return
	}
	t.Parallel()
	srv := lightServer(t, jwkstest.WithTLS())
	roots := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(roots, srv.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory as SSL_CERT_FILE makes x509.SystemCertPool fail (a missing file would
	// only make it empty).
	unreadable := t.TempDir()
	for name, env := range map[string][]string{
		"system root trusts the server": {childRootsEnv + "=" + roots, "SSL_CERT_FILE=" + roots, "SSL_CERT_DIR=" + t.TempDir()},
		"system roots unreadable":       {childRootsEnv + "=none", "SSL_CERT_FILE=" + unreadable, "SSL_CERT_DIR=" + filepath.Join(unreadable, "missing")},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runChild(t, "TestCAFileAddsToSystemRoots", env...)
		})
	}
}

// writeOtherCA writes a PEM file with a CA certificate that signed nothing the test
// servers use.
func writeOtherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "another private CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
