//go:build e2e

package interop_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// boundCase is one request of testdata/oidc/dpop-client.mjs and what tokengate must
// answer. reason is the tokengate_decisions_total reason the request adds; challenge
// the error of its WWW-Authenticate ("" for an allowed request).
type boundCase struct {
	name      string
	status    int
	reason    string
	challenge string
}

// boundCases are the client's requests, in its order. Allowed requests, and only they,
// reach the upstream.
var boundCases = []boundCase{
	{"dpop: token with its proof", 200, "ok", ""},
	{"dpop: same token, a new proof", 200, "ok", ""},
	{"dpop: replayed proof", 401, "replay", "invalid_dpop_proof"},
	{"dpop: proof of another key", 401, "binding", "invalid_token"},
	{"dpop: token as Bearer", 401, "binding", "invalid_token"},
	{"dpop: proof for another URL", 401, "dpop_proof", "invalid_dpop_proof"},
	{"mtls: token over plain HTTP", 401, "binding", "invalid_token"},
	{"mtls: token with its certificate", 200, "ok", ""},
	{"mtls: token without a certificate", 401, "binding", "invalid_token"},
	{"mtls: token with another certificate", 401, "binding", "invalid_token"},
}

// TestDPoPAndCertificateBoundTokens: node-oidc-provider issues a DPoP-bound token
// (cnf.jkt, RFC 9449) and a certificate-bound one (cnf.x5t#S256, RFC 8705, the client
// authenticated with tls_client_auth over the provider's TLS listener); oauth4webapi,
// a client library nobody here wrote, gets them and calls two tokengate sidecars with
// `dpop: allowed`: one on plain HTTP, one serving TLS and asking for client
// certificates. Each request's status, challenge and decision reason (read from
// /metrics between two requests) must be those of boundCases, and the upstream must
// see exactly the allowed requests.
func TestDPoPAndCertificateBoundTokens(t *testing.T) {
	began := time.Now()
	certs := newPKI(t)
	op := startBoundProvider(t, newKey(t, "bound"), certs)

	plainUp, tlsUp := upstreamtest.Start(t), upstreamtest.Start(t)
	plainAddr, tlsAddr := e2etest.FreeAddr(t), e2etest.FreeAddr(t)
	plainURL, tlsURL := "http://"+plainAddr, "https://"+tlsAddr
	plain := startSidecarAt(t, plainAddr, boundConfig(op.Issuer, plainUp.URL, plainURL, ""))
	secure := startSidecarAt(t, tlsAddr, boundConfig(op.Issuer, tlsUp.URL, tlsURL,
		fmt.Sprintf("tls: {cert: %q, key: %q, clientCA: %q}\n", certs.serverCert, certs.serverKey, certs.ca)))

	cl := startBoundClient(t, op.Issuer, plainURL, tlsURL, certs)
	var first struct{ Tokens boundTokens }
	cl.next(t, &first)
	jkt := checkBoundTokens(t, first.Tokens, certs)

	type target struct {
		sc *e2etest.Sidecar
		up *upstreamtest.Server
	}
	targets := map[string]target{"http": {plain, plainUp}, "tls": {secure, tlsUp}}
	before := map[string]map[string]float64{"http": plain.Metrics(t), "tls": secure.Metrics(t)}
	seen := map[string]int{"http": 0, "tls": 0}
	var table []string
	for _, want := range boundCases {
		var got boundOutcome
		cl.next(t, &got)
		if got.Case != want.name {
			t.Fatalf("the client's next case is %q, want %q", got.Case, want.name)
		}
		tg := targets[got.Listener]
		if tg.sc == nil {
			t.Fatalf("%s: listener %q", got.Case, got.Listener)
		}
		after := tg.sc.Metrics(t)
		reasons := decisionDelta(before[got.Listener], after)
		before[got.Listener] = after
		reached := tg.up.Count() - seen[got.Listener]
		seen[got.Listener] = tg.up.Count()
		table = append(table, fmt.Sprintf("%-40s → %d %-11s %.1fms  %s", got.Case, got.Status, strings.Join(reasons, ","), got.MS, got.WWWAuthenticate))

		if got.Status != want.status {
			t.Errorf("%s: %d %s %q (%s), want %d", got.Case, got.Status, got.Error, got.ErrorDescription, got.WWWAuthenticate, want.status)
		}
		if !slices.Equal(reasons, []string{want.reason}) {
			t.Errorf("%s: decisions %v, want exactly one with reason %q", got.Case, reasons, want.reason)
		}
		switch allowed := want.status == 200; {
		case allowed && reached != 1:
			t.Errorf("%s: the upstream saw %d requests, want 1", got.Case, reached)
		case !allowed && reached != 0:
			t.Errorf("%s: refused, yet the upstream saw %d requests", got.Case, reached)
		case allowed:
			last, client := tg.up.Last(), strings.TrimSuffix(strings.Fields(got.Case)[0], ":")+"-client"
			if last.Method != "GET" || last.Path != map[string]string{"http": "/orders/1", "tls": "/orders/3"}[got.Listener] || last.Header.Get("X-Auth-Client-Id") != client {
				t.Errorf("%s: the upstream got %s %s with X-Auth-Client-Id %q, want %s", got.Case, last.Method, last.Path, last.Header.Get("X-Auth-Client-Id"), client)
			}
		}
		if want.challenge != "" {
			checkBoundChallenge(t, got, want)
		}
		if got.Case == "dpop: token with its proof" {
			checkProof(t, got.Proof, first.Tokens.DPoP.AccessToken, jkt, plainURL+"/orders/1")
			if got.AuthorizationScheme != "DPoP" {
				t.Errorf("oauth4webapi sent the token with the %q scheme, want DPoP", got.AuthorizationScheme)
			}
		}
	}
	cl.finish(t)
	if plainUp.Count() != 2 || tlsUp.Count() != 1 {
		t.Errorf("the upstreams saw %d (plain) and %d (TLS) requests, want 2 and 1", plainUp.Count(), tlsUp.Count())
	}
	t.Logf("oidc-provider tokens: DPoP-bound (cnf.jkt %s), certificate-bound (cnf.x5t#S256 %s, tls_client_auth at %s; without a certificate → %d %s)",
		jkt, certs.clientThumbprint, first.Tokens.MTLS.TokenEndpoint, first.Tokens.MTLSWithoutCertificate.Status, first.Tokens.MTLSWithoutCertificate.Error)
	t.Logf("oauth4webapi through tokengate (case → status, reason, client-side time, challenge):\n%s", strings.Join(table, "\n"))
	t.Logf("whole test %s", time.Since(began).Round(time.Millisecond))
}

// boundConfig is config() with DPoP allowed for the provider's issuer, the sidecar's
// external URL, DPoP proofs' jtis in memory, client certificates from the TLS
// listener, and tlsBlock (a `tls:` line, or "").
func boundConfig(issuer, upstream, externalURL, tlsBlock string) string {
	return fmt.Sprintf("externalURL: %q\n%s", externalURL, tlsBlock) + `tokens:
  dpop: {maxAge: 60s}
  clientCertificate: {from: tls}
replay: {store: memory}
` + config(issuer, upstream, requireATJWT+"\n    dpop: allowed")
}

// startSidecarAt starts the sidecar listening on addr, which the test chose so that
// the configuration can name it as the external URL (the --listen given last wins).
func startSidecarAt(t *testing.T, addr, cfg string) *e2etest.Sidecar {
	t.Helper()
	return e2etest.StartSidecar(t, e2etest.Options{Config: cfg, Args: []string{"--listen", addr}})
}

// boundTokens is the client's first line: the tokens it got.
type boundTokens struct {
	DPoP struct {
		TokenType   string            `json:"token_type"`
		AccessToken string            `json:"access_token"`
		JWK         map[string]string `json:"jwk"`
	} `json:"dpop"`
	OtherJWK map[string]string `json:"other_jwk"`
	MTLS     struct {
		TokenType     string `json:"token_type"`
		AccessToken   string `json:"access_token"`
		TokenEndpoint string `json:"token_endpoint"`
	} `json:"mtls"`
	MTLSWithoutCertificate boundOutcome `json:"mtls_without_certificate"`
}

// boundOutcome is one of the client's requests and the answer.
type boundOutcome struct {
	Case                string  `json:"case"`
	Listener            string  `json:"listener"`
	Status              int     `json:"status"`
	WWWAuthenticate     string  `json:"www_authenticate"`
	Error               string  `json:"error"`
	ErrorDescription    string  `json:"error_description"`
	MS                  float64 `json:"ms"`
	Proof               string  `json:"proof"`
	AuthorizationScheme string  `json:"authorization_scheme"`
}

// checkBoundTokens checks that the provider's tokens really are bound: cnf.jkt is the
// thumbprint of the client's key, cnf.x5t#S256 that of its certificate. It returns jkt.
func checkBoundTokens(t *testing.T, tk boundTokens, certs *pki) string {
	t.Helper()
	if !strings.EqualFold(tk.DPoP.TokenType, "DPoP") {
		t.Fatalf("DPoP token_type %q", tk.DPoP.TokenType)
	}
	h, c := decodeJWT(t, tk.DPoP.AccessToken)
	cnf, _ := c["cnf"].(map[string]any)
	jkt := jwkThumbprint(t, tk.DPoP.JWK)
	if h["typ"] != "at+jwt" || c["aud"] != ordersAPI || c["client_id"] != "dpop-client" || cnf["jkt"] != jkt || len(cnf) != 1 {
		t.Fatalf("DPoP token header %v claims %v, want typ at+jwt, aud %s, client_id dpop-client and only cnf.jkt %s", h, c, ordersAPI, jkt)
	}
	if jwkThumbprint(t, tk.OtherJWK) == jkt {
		t.Fatal("the other key has the client key's thumbprint")
	}
	if !strings.EqualFold(tk.MTLS.TokenType, "Bearer") {
		t.Fatalf("mTLS token_type %q", tk.MTLS.TokenType)
	}
	h, c = decodeJWT(t, tk.MTLS.AccessToken)
	cnf, _ = c["cnf"].(map[string]any)
	if h["typ"] != "at+jwt" || c["aud"] != ordersAPI || c["client_id"] != "mtls-client" || cnf["x5t#S256"] != certs.clientThumbprint || len(cnf) != 1 {
		t.Fatalf("mTLS token header %v claims %v, want typ at+jwt, aud %s, client_id mtls-client and only cnf.x5t#S256 %s", h, c, ordersAPI, certs.clientThumbprint)
	}
	if !strings.HasPrefix(tk.MTLS.TokenEndpoint, "https://127.0.0.1:") {
		t.Fatalf("the mTLS token endpoint %q is not the provider's TLS listener", tk.MTLS.TokenEndpoint)
	}
	if r := tk.MTLSWithoutCertificate; r.Status != 401 || r.Error != "invalid_client" {
		t.Fatalf("the provider gave mtls-client a token without a certificate: %+v", r)
	}
	return jkt
}

// checkProof checks the proof oauth4webapi sent (RFC 9449 §4.2): the client's key, the
// method, the URL and the token's hash.
func checkProof(t *testing.T, proof, token, jkt, url string) {
	t.Helper()
	h, c := decodeJWT(t, proof)
	jwk := map[string]string{}
	if m, ok := h["jwk"].(map[string]any); ok {
		for k, v := range m {
			jwk[k], _ = v.(string)
		}
	}
	ath := sha256.Sum256([]byte(token))
	if h["typ"] != "dpop+jwt" || h["alg"] != "ES256" || jwkThumbprint(t, jwk) != jkt ||
		c["htm"] != "GET" || c["htu"] != url || c["ath"] != base64.RawURLEncoding.EncodeToString(ath[:]) || c["jti"] == nil {
		t.Errorf("oauth4webapi's proof: header %v claims %v; want typ dpop+jwt, ES256, the key of jkt %s, GET %s and the token's ath", h, c, jkt, url)
	}
}

// checkBoundChallenge checks a refusal's WWW-Authenticate: its error, and a DPoP
// challenge with algs (tokengate allows DPoP for this issuer, RFC 9449 §7.1).
func checkBoundChallenge(t *testing.T, got boundOutcome, want boundCase) {
	t.Helper()
	ch := got.WWWAuthenticate
	if !strings.Contains(ch, `error="`+want.challenge+`"`) || !dpopScheme.MatchString(ch) || !strings.Contains(ch, `algs="`) {
		t.Errorf("%s: WWW-Authenticate %q, want a DPoP challenge with algs and error=%q", got.Case, ch, want.challenge)
	}
}

var dpopScheme = regexp.MustCompile(`(^|[ ,])DPoP `)

// jwkThumbprint is an EC public key's RFC 7638 thumbprint: SHA-256 of its required
// members in lexicographic order, base64url.
func jwkThumbprint(t *testing.T, jwk map[string]string) string {
	t.Helper()
	if jwk["kty"] != "EC" || jwk["crv"] == "" || jwk["x"] == "" || jwk["y"] == "" {
		t.Fatalf("not an EC public JWK: %v", jwk)
	}
	b, _ := json.Marshal(struct {
		Crv string `json:"crv"`
		Kty string `json:"kty"`
		X   string `json:"x"`
		Y   string `json:"y"`
	}{jwk["crv"], jwk["kty"], jwk["x"], jwk["y"]})
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

var reasonLabel = regexp.MustCompile(`[{,]reason="([^"]*)"`)

// decisionDelta lists, for each tokengate_decisions_total series that grew between two
// scrapes, its reason once per decision added.
func decisionDelta(before, after map[string]float64) []string {
	var out []string
	for series, v := range after {
		if !strings.HasPrefix(series, "tokengate_decisions_total{") {
			continue
		}
		reason := "?"
		if m := reasonLabel.FindStringSubmatch(series); m != nil {
			reason = m[1]
		}
		for range int(v - before[series]) {
			out = append(out, reason)
		}
	}
	slices.Sort(out)
	return out
}

// pki is a CA and the certificates it issued, as PEM files: the servers' (127.0.0.1,
// for the provider's and the sidecar's TLS listeners), the client's (CN=mtls-client,
// the one mtls-client registered) and another client's (CN=intruder).
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey, otherCert, otherKey string
	// clientThumbprint is base64url(SHA-256(DER)) of the client's certificate: the
	// cnf.x5t#S256 of its tokens.
	clientThumbprint string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	serial := int64(0)
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER}} {
			if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return cert, key, certFile, keyFile
	}
	p := &pki{}
	ca, caKey, caFile, _ := issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "tokengate e2e CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, nil, "ca")
	p.ca = caFile
	_, _, p.serverCert, p.serverKey = issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey, "server")
	client := func(cn string) (*x509.Certificate, string, string) {
		c, _, cf, kf := issue(&x509.Certificate{
			Subject:  pkix.Name{CommonName: cn},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, ca, caKey, cn)
		return c, cf, kf
	}
	c, cf, kf := client("mtls-client")
	p.clientCert, p.clientKey = cf, kf
	sum := sha256.Sum256(c.Raw)
	p.clientThumbprint = base64.RawURLEncoding.EncodeToString(sum[:])
	_, p.otherCert, p.otherKey = client("intruder")
	return p
}

// startBoundProvider starts testdata/oidc/bound-provider.mjs: the issuer on a free
// loopback port, its mTLS token endpoint on another, signing with key.
func startBoundProvider(t *testing.T, key *jwkstest.Key, certs *pki) *provider {
	t.Helper()
	_, port, _ := net.SplitHostPort(e2etest.FreeAddr(t))
	p := &provider{Issuer: "http://127.0.0.1:" + port, port: port, dir: t.TempDir()}
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("oidc-provider output:\n%s", strings.Join(p.output(), "\n"))
		}
	})
	b, _ := json.Marshal(map[string]any{"keys": []any{privateJWK(key)}})
	keysFile := filepath.Join(p.dir, "keys.json")
	if err := os.WriteFile(keysFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := p.startScript("bound-provider.mjs", "--port", port, "--tls-port", strconv.Itoa(e2etest.FreePort(t)),
			"--keys", keysFile, "--ca", certs.ca, "--cert", certs.serverCert, "--key", certs.serverKey)
		if err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("bound-provider.mjs did not start: %v\n%s", err, strings.Join(p.output(), "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startBoundClient(t *testing.T, issuer, api, tlsAPI string, certs *pki) *stepClient {
	t.Helper()
	return startStepClient(t, "dpop-client.mjs", "--issuer", issuer, "--api", api, "--tls-api", tlsAPI,
		"--ca", certs.ca, "--cert", certs.clientCert, "--key", certs.clientKey, "--other-cert", certs.otherCert, "--other-key", certs.otherKey)
}
