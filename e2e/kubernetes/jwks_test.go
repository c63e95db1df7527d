//go:build e2e

package kubernetes

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/kubetest"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/middleware"

	authenticationv1 "k8s.io/api/authentication/v1"
)

// writeToken replaces a projected token file as the kubelet does: a new file renamed
// over the old one.
func writeToken(t *testing.T, path, token string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestKeysFetchedWithAServiceAccountToken: a Gate trusts the API server's
// ServiceAccount issuer. Its key set is fetched from /openid/v1/jwks with the pod's
// token (a file, as the projected volume has it) and the cluster CA, and verifies the
// tokens that another ServiceAccount requested for this API; it follows a rotation of
// the API server's signing key and of the pod's token.
func TestKeysFetchedWithAServiceAccountToken(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	c.CreateNamespace(t, "shop")
	c.CreateNamespace(t, "billing")
	c.CreateServiceAccount(t, "shop", "orders")    // the API's pod, where the Gate runs
	c.CreateServiceAccount(t, "billing", "ledger") // its caller
	const audience = "https://orders.shop.example"
	podToken := func() string { return c.Token(t, "shop", "orders", authenticationv1.TokenRequestSpec{}) }
	callerToken := func() string {
		return c.Token(t, "billing", "ledger", authenticationv1.TokenRequestSpec{Audiences: []string{audience}})
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, podToken())

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var logs e2etest.LockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	cfg := jwks.Config{
		Issuer: c.Issuer(),
		// The API server itself: in a pod, https://kubernetes.default.svc/openid/v1/jwks.
		JWKSURI:         c.URL() + jwksPath,
		CAFile:          c.CAFile(),
		BearerTokenFile: tokenFile,
		Refresh:         jwks.Refresh{UnknownKIDEvery: time.Second},
	}
	keys, err := jwks.NewGroup(ctx, []jwks.Config{cfg}, jwks.Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	gate, err := middleware.New(ctx, middleware.Config{
		Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: c.Issuer()}, Audiences: []string{audience}}},
		Routes:  []middleware.Route{{Match: "/"}},
	}, middleware.Options{Registerer: prometheus.NewRegistry(), Logger: logger, KeySource: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gate.Close)
	waitCtx, waitCancel := context.WithTimeout(ctx, 30*time.Second)
	defer waitCancel()
	if err := gate.WaitReady(waitCtx); err != nil {
		t.Fatal(err)
	}
	handler := gate.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := middleware.ClaimsFrom(r.Context())
		_, _ = w.Write([]byte(claims.Subject))
	}))
	call := func(token string) (int, string) {
		req := httptest.NewRequest(http.MethodGet, "/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	set, _ := keys.Set(c.Issuer())
	first := callerToken()

	t.Run("without the pod's token the key set is refused", func(t *testing.T) {
		anonymous, err := jwks.New(ctx, jwks.Config{Issuer: c.Issuer(), JWKSURI: c.URL() + jwksPath, CAFile: c.CAFile()}, jwks.Options{Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		defer anonymous.Close()
		var se *jwks.StatusError
		if err := anonymous.Refresh(ctx); !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
			t.Fatalf("Refresh without a token = %v, want 401", err)
		}
	})

	t.Run("a caller's token for this API verifies", func(t *testing.T) {
		if code, body := call(first); code != http.StatusOK || body != "system:serviceaccount:billing:ledger" {
			t.Fatalf("%d %s", code, body)
		}
	})

	t.Run("a token for another audience, or with a wrong signature, does not", func(t *testing.T) {
		if code, _ := call(podToken()); code != http.StatusUnauthorized {
			t.Errorf("a token for the API server: %d", code)
		}
		forged := first[:len(first)-8] + strings.Repeat("A", 8)
		if code, _ := call(forged); code != http.StatusUnauthorized {
			t.Errorf("a forged signature: %d", code)
		}
	})

	t.Run("a rotation of the signing key is followed", func(t *testing.T) {
		before := set.KeyIDs()
		c.RotateSigningKey(t)
		second := callerToken()
		kid := header(t, second)["kid"].(string)
		if slices.Contains(before, kid) {
			t.Fatalf("the new token's kid %s was known before the rotation", kid)
		}
		// An unknown kid fetches the keys again, with the pod's token, which the old key
		// signed and which still authenticates: the API server trusts both keys now.
		if code, body := call(second); code != http.StatusOK {
			t.Fatalf("a token signed with the new key: %d %s", code, body)
		}
		if code, body := call(first); code != http.StatusOK {
			t.Fatalf("a token signed with the old key, still published: %d %s", code, body)
		}
		got := set.KeyIDs()
		if len(got) != 2 || !slices.Contains(got, kid) {
			t.Fatalf("keys after the rotation: %v", got)
		}
		t.Logf("kids before the rotation %v, after %v", before, got)
	})

	t.Run("the old key retired, the pod's new token fetches the keys", func(t *testing.T) {
		c.RetireOldKeys(t)
		// The pod's token was signed with the retired key: the API server refuses it.
		var se *jwks.StatusError
		if err := set.Refresh(ctx); !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
			t.Fatalf("Refresh with a token of the retired key = %v, want 401", err)
		}
		writeToken(t, tokenFile, podToken()) // the kubelet's rotation
		if err := set.Refresh(ctx); err != nil {
			t.Fatalf("Refresh with the rotated token: %v", err)
		}
		if got := set.KeyIDs(); len(got) != 1 {
			t.Fatalf("keys after the retirement: %v", got)
		}
		if code, _ := call(first); code != http.StatusUnauthorized {
			t.Errorf("a token of the retired key: %d", code)
		}
		if code, body := call(callerToken()); code != http.StatusOK {
			t.Errorf("a new token: %d %s", code, body)
		}
	})

	t.Run("no log line holds a token", func(t *testing.T) {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "eyJ") {
				t.Errorf("a log line holds a token: %s", line)
			}
		}
		if !strings.Contains(logs.String(), "status 401") {
			t.Errorf("the refused fetch was not logged:\n%s", logs.String())
		}
	})
}
