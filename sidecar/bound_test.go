package sidecar_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/dpop/dpoptest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// boundConfig is baseConfig with DPoP allowed and a single-use route.
const boundConfig = `
upstream: %[2]q
realm: orders-api
externalURL: https://orders.example.com
issuers:
  - issuer: %[1]q
    audiences: [%[3]q]
    dpop: allowed
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
  - match: "POST /payments"
    scopes: [payments:write]
    singleUse: true
`

func dpopHeaders(tok, proof string) []string {
	return []string{"Authorization: DPoP " + tok, "DPoP: " + proof}
}

// TestDPoPThroughTheSidecar: a DPoP-bound token passes with a proof made for the
// external URL, whatever Host the sidecar sees; the same proof again, or the token as
// Bearer, does not reach the upstream.
func TestDPoPThroughTheSidecar(t *testing.T) {
	h := startWith(t, boundConfig, "")
	client := dpoptest.MustNewClient("ES256")
	tok := h.as.MustMint(jwkstest.Claims{"scope": "orders:read", "cnf": map[string]any{"jkt": client.JKT()}})
	proof := client.MustProof("GET", "https://orders.example.com/orders/7", tok, nil, nil)
	resp, body := h.do(t, "GET", "/orders/7", "", dpopHeaders(tok, proof)...)
	if resp.StatusCode != 200 || body != "upstream saw GET /orders/7" {
		t.Fatalf("with a proof: %d %s %q", resp.StatusCode, body, resp.Header.Values("WWW-Authenticate"))
	}
	seen := h.up.Count()
	resp, _ = h.do(t, "GET", "/orders/7", "", dpopHeaders(tok, proof)...)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `DPoP realm="orders-api", error="invalid_dpop_proof"`) {
		t.Errorf("the proof replayed: %d %q", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
	resp, _ = h.do(t, "GET", "/orders/7", tok)
	if resp.StatusCode != 401 {
		t.Errorf("the DPoP-bound token as Bearer: %d", resp.StatusCode)
	}
	if h.up.Count() != seen {
		t.Errorf("refused requests reached the upstream: %d, want %d", h.up.Count(), seen)
	}
}

// TestSingleUseSurvivesAReload: the store outlives a configuration reload, so a token
// used before it is still refused after it.
func TestSingleUseSurvivesAReload(t *testing.T) {
	h := startWith(t, boundConfig, "")
	tok := h.as.MustMint(jwkstest.Claims{"scope": "payments:write"})
	if resp, _ := h.do(t, "POST", "/payments", tok); resp.StatusCode != 200 {
		t.Fatalf("first use: %d", resp.StatusCode)
	}
	h.writeConfig(t, "mode: enforce\n")
	eventually(t, "the reload", func() bool { return strings.Contains(h.logs.String(), "configuration reloaded") })
	resp, body := h.do(t, "POST", "/payments", tok)
	if resp.StatusCode != 401 || !strings.Contains(body, "used before") {
		t.Errorf("second use after a reload: %d %s", resp.StatusCode, body)
	}
	if h.up.Count() != 1 {
		t.Errorf("the upstream saw %d requests, want 1", h.up.Count())
	}
}

// pki is a CA with what it signed, written to files.
type pki struct {
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, key: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.write(t, "ca.crt", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue signs a certificate for a server (loopback) or a client.
func (p *pki) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func thumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return jwkstest.Encode(sum[:])
}

// TestCertificateBoundOverTLS: the sidecar's own TLS listener asks for a client
// certificate (tls.clientCA); a certificate-bound token passes with its certificate and
// is refused with none or another one; a client header claiming a certificate never
// reaches the upstream.
func TestCertificateBoundOverTLS(t *testing.T) {
	p := newPKI(t)
	server := p.issue(t, "sidecar", true)
	keyDER, _ := x509.MarshalECPrivateKey(server.PrivateKey.(*ecdsa.PrivateKey))
	certFile := p.write(t, "tls.crt", "CERTIFICATE", server.Certificate[0])
	keyFile := p.write(t, "tls.key", "EC PRIVATE KEY", keyDER)
	extra := "tls: {cert: " + certFile + ", key: " + keyFile + ", clientCA: " + filepath.Join(p.dir, "ca.crt") + "}\n"
	h := start(t, extra)
	url := strings.Replace(h.url, "http://", "https://", 1)

	good, other := p.issue(t, "client", false), p.issue(t, "another client", false)
	tok := h.as.MustMint(jwkstest.Claims{"scope": "orders:read", "cnf": map[string]any{"x5t#S256": thumbprint(good.Certificate[0])}})
	get := func(cert *tls.Certificate, headers ...string) (int, error) {
		cfg := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", url+"/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		for _, hv := range headers {
			k, v, _ := strings.Cut(hv, ": ")
			req.Header.Add(k, v)
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.ProtoMajor != 2 {
			t.Errorf("TLS served %s, want HTTP/2", resp.Proto)
		}
		return resp.StatusCode, nil
	}
	sum := sha256.Sum256(good.Certificate[0])
	if code, err := get(&good, "X-Forwarded-Client-Cert: Hash="+hex.EncodeToString(sum[:])); code != 200 {
		t.Fatalf("with its certificate: %d %v", code, err)
	}
	if got := h.up.Last().Header.Get("X-Forwarded-Client-Cert"); got != "" {
		t.Errorf("the upstream received X-Forwarded-Client-Cert %q", got)
	}
	seen := h.up.Count()
	for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "another certificate": &other} {
		if code, err := get(cert); code != 401 {
			t.Errorf("%s: %d %v", name, code, err)
		}
	}
	// A certificate the CA did not sign ends at the handshake.
	if _, err := get(ptr(newPKI(t).issue(t, "stranger", false))); err == nil {
		t.Error("a certificate of another CA was accepted")
	}
	if h.up.Count() != seen {
		t.Errorf("refused requests reached the upstream")
	}
}

func ptr[T any](v T) *T { return &v }
