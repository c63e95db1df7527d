package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/jwks"
)

// binary is the tokengate binary built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokengate-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tokengate")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building tokengate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func TestDispatch(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout+stderr
	}{
		{nil, exitUsage, "Commands:"},
		{[]string{"help"}, exitOK, "issuer"},
		{[]string{"-h"}, exitOK, "version"},
		{[]string{"nope"}, exitUsage, `unknown command "nope"`},
		{[]string{"version", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"version", "--nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"issuer", "-h"}, exitOK, "TOKENGATE_ROTATE_EVERY"},
		{[]string{"issuer", "--alg", "HS256", "--listen", "127.0.0.1:0"}, exitUsage, "--alg"},
		{[]string{"issuer", "--client", "only-id"}, exitUsage, "id:secret"},
		{[]string{"issuer", "--token-ttl", "0s"}, exitUsage, "--token-ttl"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			code := run(context.Background(), tc.args, &out, &out)
			if code != tc.code || !strings.Contains(out.String(), tc.out) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out.String(), tc.code, tc.out)
			}
		})
	}
	// Every command of the table is in the usage.
	var out bytes.Buffer
	usage(&out)
	for _, c := range commands {
		if !strings.Contains(out.String(), "  "+c.name+" ") {
			t.Errorf("usage lacks %s", c.name)
		}
	}
}

func TestEnvironmentFlags(t *testing.T) {
	newFS := func() (*flag.FlagSet, *string, *time.Duration) {
		fs := newFlagSet("x", "", io.Discard)
		return fs, fs.String("listen-addr", "default", ""), fs.Duration("wait", time.Second, "")
	}
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}

	fs, listen, wait := newFS()
	if err := parseFlags(fs, nil, env(map[string]string{"TOKENGATE_LISTEN_ADDR": ":9", "TOKENGATE_WAIT": "3s"})); err != nil {
		t.Fatal(err)
	}
	if *listen != ":9" || *wait != 3*time.Second {
		t.Fatalf("env not applied: %s %s", *listen, *wait)
	}

	fs, listen, _ = newFS()
	if err := parseFlags(fs, []string{"--listen-addr", ":1"}, env(map[string]string{"TOKENGATE_LISTEN_ADDR": ":9"})); err != nil {
		t.Fatal(err)
	}
	if *listen != ":1" {
		t.Fatalf("the command line must beat the environment: %s", *listen)
	}

	fs, _, _ = newFS()
	err := parseFlags(fs, nil, env(map[string]string{"TOKENGATE_WAIT": "soon"}))
	if err == nil || !strings.Contains(err.Error(), "$TOKENGATE_WAIT") || !strings.Contains(err.Error(), `"soon"`) {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestParseClient(t *testing.T) {
	cl, err := parseClient("c1:s1:orders:read, orders:write")
	if err != nil || cl.ID != "c1" || cl.Secret != "s1" || strings.Join(cl.Scopes, " ") != "orders:read orders:write" {
		t.Fatalf("%+v %v", cl, err)
	}
	if cl, err := parseClient("c1:s1"); err != nil || len(cl.Scopes) != 0 {
		t.Fatalf("no scopes: %+v %v", cl, err)
	}
	for _, bad := range []string{"", "c1", ":s1", "c1:", `c1:s1:a"b`} {
		_, err := parseClient(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "s1") && strings.Contains(bad, "s1:") && !strings.Contains(bad, `"`) {
			t.Errorf("%q: the error shows the secret: %v", bad, err)
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "tokengate v") || !strings.HasPrefix(lines[1], "commit: ") || !strings.HasPrefix(lines[2], "go: go1.") {
		t.Fatalf("version output:\n%s", out)
	}
}

// startIssuer runs `tokengate issuer` and returns the process and its issuer URL.
func startIssuer(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"issuer", "--listen", "127.0.0.1:0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-first:
		issuer, ok := strings.CutPrefix(line, "issuer: ")
		if !ok {
			t.Fatalf("first line %q; stderr:\n%s", line, stderr.String())
		}
		return cmd, issuer
	case <-time.After(30 * time.Second):
		t.Fatalf("no issuer line; stderr:\n%s", stderr.String())
	}
	return nil, ""
}

func getToken(t *testing.T, tokenURL, user, pass string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

func TestIssuerEndToEnd(t *testing.T) {
	cmd, issuer := startIssuer(t, "--client", "c1:s1:orders:read", "--audience", "https://orders.example.com")
	if !strings.HasPrefix(issuer, "http://127.0.0.1:") {
		t.Fatalf("issuer %q", issuer)
	}

	resp, err := http.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta["issuer"] != issuer {
		t.Fatalf("discovery issuer %v, want %s", meta["issuer"], issuer)
	}
	tokenURL := meta["token_endpoint"].(string)

	if code, m := getToken(t, tokenURL, "c1", "wrong", url.Values{"grant_type": {"client_credentials"}}); code != 401 || m["error"] != "invalid_client" {
		t.Fatalf("wrong secret: %d %v", code, m)
	}
	if code, m := getToken(t, tokenURL, "c1", "s1", url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:write"}}); code != 400 || m["error"] != "invalid_scope" {
		t.Fatalf("scope beyond the client's: %d %v", code, m)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	set, err := jwks.New(ctx, jwks.Config{Issuer: issuer}, jwks.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if err := set.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	verify := func() *jwt.Token {
		t.Helper()
		code, m := getToken(t, tokenURL, "c1", "s1", url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}})
		if code != 200 {
			t.Fatalf("token: %d %v", code, m)
		}
		tok, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(),
			jwt.WithAudience("https://orders.example.com"), jwt.WithIssuer(issuer)).Parse(m["access_token"].(string), set.Keyfunc(ctx))
		if err != nil {
			t.Fatal(err)
		}
		c := tok.Claims.(jwt.MapClaims)
		if c["scope"] != "orders:read" || c["client_id"] != "c1" {
			t.Fatalf("claims %v", c)
		}
		return tok
	}
	before := verify().Header["kid"]

	// SIGHUP rotates: the next token has a new kid, which the key set picks up through
	// its unknown-kid refresh.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if after := verify().Header["kid"]; after != before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not rotate the key")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// SIGTERM: a clean exit 0.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10s of SIGTERM")
	}
}
