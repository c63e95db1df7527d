package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
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
		args   []string
		code   int
		stdout string // in stdout
		stderr string // in stderr
	}{
		{args: nil, code: exitUsage, stderr: "Commands:"},
		{args: []string{"help"}, code: exitOK, stdout: "Commands:"},
		{args: []string{"-h"}, code: exitOK, stdout: "Commands:"},
		{args: []string{"--help"}, code: exitOK, stdout: "Commands:"},
		{args: []string{"nope"}, code: exitUsage, stderr: `unknown command "nope"`},
		{args: []string{"version", "extra"}, code: exitUsage, stderr: `unexpected argument "extra"`},
		{args: []string{"version", "--nope"}, code: exitUsage, stderr: "flag provided but not defined"},
		{args: []string{"issuer", "-h"}, code: exitOK, stderr: "--rotate-every, $TOKENGATE_ROTATE_EVERY"},
		{args: []string{"issuer", "--alg", "HS256"}, code: exitUsage, stderr: `--alg "HS256"`},
		{args: []string{"issuer", "--client", "only-id"}, code: exitUsage, stderr: "flag -client: want id:secret"},
		{args: []string{"issuer", "--client", "c1:s1", "--client", "c1:s2"}, code: exitUsage, stderr: `client "c1" is given twice`},
		{args: []string{"issuer", "--token-ttl", "0s"}, code: exitUsage, stderr: "--token-ttl 0s: must be positive"},
		{args: []string{"issuer", "--rotate-every", "-1s"}, code: exitUsage, stderr: "--rotate-every -1s: must not be negative"},
		{args: []string{"issuer", "--listen", "0.0.0.0:0"}, code: exitUsage, stderr: `--listen "0.0.0.0:0": the host must be a loopback address`},
		{args: []string{"issuer", "--listen", "127.0.0.1"}, code: exitUsage, stderr: `--listen "127.0.0.1": address 127.0.0.1: missing port`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, %q in stdout, %q in stderr",
					code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}

	t.Run("usage lists every command", func(t *testing.T) {
		var out bytes.Buffer
		if code := run(context.Background(), []string{"help"}, &out, io.Discard); code != exitOK {
			t.Fatalf("exit %d", code)
		}
		for _, c := range commands {
			if !strings.Contains(out.String(), "\n  "+c.name+" ") {
				t.Errorf("usage lacks %s:\n%s", c.name, out.String())
			}
		}
	})
}

func TestEnvironmentFlags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		env        map[string]string
		wantListen string
		wantWait   time.Duration
		wantErr    []string // all in the error; none means no error
		fromEnv    string   // a flag the environment set
	}{
		{name: "defaults", wantListen: "default", wantWait: time.Second},
		{
			name:       "environment fills unset flags",
			env:        map[string]string{"TOKENGATE_LISTEN_ADDR": ":9", "TOKENGATE_WAIT": "3s"},
			wantListen: ":9", wantWait: 3 * time.Second, fromEnv: "listen-addr",
		},
		{
			name:       "command line beats environment",
			args:       []string{"--listen-addr", ":1"},
			env:        map[string]string{"TOKENGATE_LISTEN_ADDR": ":9", "TOKENGATE_WAIT": "3s"},
			wantListen: ":1", wantWait: 3 * time.Second, fromEnv: "wait",
		},
		{
			name:    "bad environment value",
			env:     map[string]string{"TOKENGATE_WAIT": "soon"},
			wantErr: []string{"$TOKENGATE_WAIT", `"soon"`, "--wait"},
		},
		{
			name:       "a bad value is ignored when the command line sets the flag",
			args:       []string{"--wait", "2s"},
			env:        map[string]string{"TOKENGATE_WAIT": "soon"},
			wantListen: "default", wantWait: 2 * time.Second,
		},
		{
			name:       "other variables are not flags",
			env:        map[string]string{"TOKENGATE_NOPE": "x", "LISTEN_ADDR": ":7"},
			wantListen: "default", wantWait: time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFlagSet("x", "", io.Discard)
			listen, wait := fs.String("listen-addr", "default", ""), fs.Duration("wait", time.Second, "")
			err := parseFlags(fs, tc.args, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if len(tc.wantErr) > 0 {
				for _, want := range tc.wantErr {
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("error %v, want it to hold %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *listen != tc.wantListen || *wait != tc.wantWait {
				t.Fatalf("listen-addr %q wait %s, want %q %s", *listen, *wait, tc.wantListen, tc.wantWait)
			}
			if tc.fromEnv != "" && fs.ref(tc.fromEnv) != "$"+envName(tc.fromEnv) {
				t.Fatalf("ref(%s) = %s", tc.fromEnv, fs.ref(tc.fromEnv))
			}
			if fs.ref("listen-addr") == "$TOKENGATE_LISTEN_ADDR" && tc.fromEnv != "listen-addr" {
				t.Fatal("a flag from the command line is named as its variable")
			}
		})
	}
}

// TestEnvironmentExitCodes runs commands with a bad environment: a usage error, exit 2,
// with a message that names the variable and, for a client, keeps its secret.
func TestEnvironmentExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name, variable, value string
		command               []string // with code; without: issuer, exitUsage
		code                  int
		want                  []string
		secret                string
	}{
		{name: "not a duration", variable: "TOKENGATE_TOKEN_TTL", value: "soon", want: []string{`$TOKENGATE_TOKEN_TTL: invalid value "soon" for --token-ttl`}},
		{name: "a valid duration out of range", variable: "TOKENGATE_TOKEN_TTL", value: "-5m", want: []string{"$TOKENGATE_TOKEN_TTL -5m0s: must be positive"}},
		{name: "not loopback", variable: "TOKENGATE_LISTEN", value: ":8081", want: []string{`$TOKENGATE_LISTEN ":8081": the host must be a loopback address`}},
		{name: "unknown alg", variable: "TOKENGATE_ALG", value: "none", want: []string{`$TOKENGATE_ALG "none"`}},
		{
			name: "bad client", variable: "TOKENGATE_CLIENT", value: "c1:hunter2:orders read",
			want: []string{`$TOKENGATE_CLIENT: invalid value "c1:***:orders read" for --client`, `scope "orders read"`}, secret: "hunter2",
		},
		{name: "log level of the demo", variable: "TOKENGATE_LOG_LEVEL", value: "loud", command: []string{"demo", "--once"}, code: exitUsage, want: []string{`--log-level "loud"`}},
		{name: "another command's variable", variable: "TOKENGATE_TOKEN_TTL", value: "soon", command: []string{"version"}, code: exitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.variable, tc.value)
			if tc.command == nil {
				tc.command, tc.code = []string{"issuer"}, exitUsage
			}
			// A command that wrongly accepts the environment must not serve for ever.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			if got := run(ctx, tc.command, io.Discard, &stderr); got != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", got, tc.code, stderr.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if tc.secret != "" && strings.Contains(stderr.String(), tc.secret) {
				t.Errorf("stderr shows the secret:\n%s", stderr.String())
			}
		})
	}
}

func TestBuildVersion(t *testing.T) {
	ver, commit := buildVersion()
	if ver != "v0.0.0-dev" || commit == "" {
		t.Fatalf("unstamped test binary: version %q commit %q", ver, commit)
	}
	defer func(v string) { version = v }(version)
	version = "v1.2.3" // what -ldflags "-X main.version=v1.2.3" does
	if ver, _ := buildVersion(); ver != "v1.2.3" {
		t.Fatalf("stamped version %q", ver)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "tokengate v") || !strings.HasPrefix(lines[1], "commit: ") || lines[2] != "go: "+runtime.Version() {
		t.Fatalf("version output:\n%s", out)
	}

	// -ldflags -X sets the version of a release build.
	stamped := filepath.Join(t.TempDir(), "tokengate")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7", "-o", stamped, ".").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err = exec.Command(stamped, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "tokengate v9.8.7\n") {
		t.Fatalf("stamped binary: %v\n%s", err, out)
	}
}
