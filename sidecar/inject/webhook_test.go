package inject

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

func review(t *testing.T, p *corev1.Pod, op admissionv1.Operation, kind string) []byte {
	t.Helper()
	raw, _ := json.Marshal(p)
	b, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("uid-1"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: kind}, Operation: op,
			Namespace: "shop", Object: runtime.RawExtension{Raw: raw},
		},
	})
	return b
}

func post(t *testing.T, h http.Handler, body []byte) (int, *admissionv1.AdmissionReview) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/mutate", bytes.NewReader(body)))
	var out admissionv1.AdmissionReview
	if w.Code == 200 {
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
	}
	return w.Code, &out
}

func TestWebhook(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	wh, err := NewWebhook(defaults, quiet, reg)
	if err != nil {
		t.Fatal(err)
	}
	count := func(result string) float64 {
		return testutil.ToFloat64(wh.requests.WithLabelValues(result))
	}

	code, out := post(t, wh, review(t, pod(nil), admissionv1.Create, "Pod"))
	r := out.Response
	if code != 200 || out.Kind != "AdmissionReview" || out.APIVersion != "admission.k8s.io/v1" || r.UID != "uid-1" || !r.Allowed || *r.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("%d %+v", code, out)
	}
	var ops []Op
	if err := json.Unmarshal(r.Patch, &ops); err != nil || len(ops) != 3 {
		t.Fatalf("patch %s", r.Patch)
	}

	_, out = post(t, wh, review(t, pod(func(p *corev1.Pod) { delete(p.Annotations, AnnotationConfig) }), admissionv1.Create, "Pod"))
	if out.Response.Allowed || out.Response.Result.Code != 400 || !strings.Contains(out.Response.Result.Message, "tokengate.io/config is missing") {
		t.Fatalf("refusal %+v", out.Response)
	}
	_, out = post(t, wh, review(t, pod(func(p *corev1.Pod) { p.Labels = nil }), admissionv1.Create, "Pod"))
	if !out.Response.Allowed || out.Response.Patch != nil {
		t.Fatalf("skip %+v", out.Response)
	}
	_, out = post(t, wh, review(t, pod(nil), admissionv1.Update, "Pod"))
	if !out.Response.Allowed || out.Response.Patch != nil {
		t.Fatal("an update was patched")
	}
	_, out = post(t, wh, review(t, pod(nil), admissionv1.Create, "Deployment"))
	if !out.Response.Allowed || out.Response.Patch != nil {
		t.Fatal("another kind was patched")
	}
	if code, _ := post(t, wh, []byte("{")); code != 400 {
		t.Fatal(code)
	}
	if code, _ := post(t, wh, bytes.Repeat([]byte(" "), maxReviewBytes+1)); code != 413 {
		t.Fatal(code)
	}
	w := httptest.NewRecorder()
	wh.ServeHTTP(w, httptest.NewRequest("GET", "/mutate", nil))
	if w.Code != 405 {
		t.Fatal(w.Code)
	}
	if count("injected") != 1 || count("refused") != 1 || count("skipped") != 3 || count("error") != 2 {
		t.Fatalf("counts %v %v %v %v", count("injected"), count("refused"), count("skipped"), count("error"))
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatal(problems, err)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 with this common name.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(certFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	_ = os.Rename(keyFile+".tmp", keyFile)
	_ = os.Rename(certFile+".tmp", certFile)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestServerTLSAndCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir, "first")
	reg := prometheus.NewRegistry()
	wh, _ := NewWebhook(defaults, quiet, reg)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	adminLn, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &Server{Webhook: wh, Registry: reg, Log: quiet, Listener: ln, AdminListener: adminLn, CertFile: certFile, KeyFile: keyFile}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	served := func(roots *x509.CertPool) (string, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Post("https://"+ln.Addr().String()+MutatePath, "application/json", bytes.NewReader(review(t, pod(nil), admissionv1.Create, "Pod")))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), `"allowed":true`) {
			t.Fatalf("%s", b)
		}
		return resp.TLS.PeerCertificates[0].Subject.CommonName, nil
	}
	if cn, err := served(pool); err != nil || cn != "first" {
		t.Fatalf("%q %v", cn, err)
	}
	// cert-manager renews: the files change, new handshakes get the new certificate.
	_, _, pool2 := writeCert(t, dir, "second")
	deadline := time.Now().Add(10 * time.Second)
	for {
		cn, err := served(pool2)
		if err == nil && cn == "second" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate was not served: %q %v", cn, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := http.Get("http://" + adminLn.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `tokengate_inject_requests_total{result="injected"}`) {
		t.Fatal("metrics")
	}
}

func TestServerNeedsACertificate(t *testing.T) {
	reg := prometheus.NewRegistry()
	wh, _ := NewWebhook(defaults, quiet, reg)
	srv := &Server{Webhook: wh, Registry: reg, Log: quiet, Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}
	if err := srv.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "/nonexistent.crt") {
		t.Fatal(err)
	}
}
