// Package e2etest runs the real tokengate binary for end-to-end tests: it builds it
// once per test binary, starts `tokengate sidecar` with a configuration on free loopback
// ports, and reads its metrics and readiness. Its waiting and plumbing helpers
// (Eventually, LockedBuffer, FreeAddr, FreePort) are the one copy every package's tests
// use.
package e2etest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// Binary builds the tokengate binary once and returns its path. TOKENGATE_E2E_BINARY
// names a binary to run instead (an earlier build, to measure before and after a
// change on the same suite).
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("TOKENGATE_E2E_BINARY"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "tokengate-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "tokengate")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/tokengate")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// ModuleRoot is the directory of the go.mod of the package under test (tokengate's).
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// FreeAddr returns a free 127.0.0.1 address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// FreePort returns a free port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Sidecar is a running `tokengate sidecar`.
type Sidecar struct {
	Cmd        *exec.Cmd
	URL, Admin string
	Listen     string
	ConfigPath string
	log        *LockedBuffer
	exited     chan error
	exitOnce   sync.Once
	exitErr    error
}

// LockedBuffer is a bytes.Buffer that a process and the test may use at once: a
// child process's output, read while it runs.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *LockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// Options of StartSidecar.
type Options struct {
	// Config is the configuration file without listen and admin, which are chosen.
	Config string
	// Args are extra command-line flags.
	Args []string
	// WaitReady waits for /readyz (default); NoWait starts and returns at once.
	NoWait bool
	// Env is added to the environment the binary inherits (GOMEMLIMIT=64MiB, say).
	Env []string
}

// StartSidecar writes the configuration and starts the binary; it is killed when the
// test ends, and its log is printed when the test failed.
func StartSidecar(t testing.TB, o Options) *Sidecar {
	t.Helper()
	s := &Sidecar{Listen: FreeAddr(t), log: &LockedBuffer{}, exited: make(chan error, 1)}
	admin := FreeAddr(t)
	s.URL, s.Admin = "http://"+s.Listen, "http://"+admin
	s.ConfigPath = filepath.Join(t.TempDir(), "tokengate.yaml")
	s.WriteConfig(t, o.Config)
	args := append([]string{"sidecar", "--config", s.ConfigPath, "--listen", s.Listen, "--admin", admin, "--log-format", "json"}, o.Args...)
	s.Cmd = exec.Command(Binary(t), args...)
	s.Cmd.Stderr = s.log
	if o.Env != nil {
		s.Cmd.Env = append(os.Environ(), o.Env...)
	}
	if err := s.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.Cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.Cmd.Process.Kill()
		s.Wait(10 * time.Second)
		if t.Failed() {
			t.Logf("sidecar log (last 4000 bytes):\n%s", tail(s.log.String(), 4000))
		}
	})
	if !o.NoWait {
		Eventually(t, 20*time.Second, "sidecar readiness", func() bool { return s.AdminStatus("/readyz") == 200 })
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// WriteConfig replaces the configuration file atomically (as a ConfigMap update does).
func (s *Sidecar) WriteConfig(t testing.TB, cfg string) {
	t.Helper()
	tmp := s.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.ConfigPath); err != nil {
		t.Fatal(err)
	}
}

// Log is the sidecar's log so far.
func (s *Sidecar) Log() string { return s.log.String() }

// Signal sends sig to the sidecar.
func (s *Sidecar) Signal(sig syscall.Signal) error { return s.Cmd.Process.Signal(sig) }

// Wait waits up to d for the process to exit and returns its error (nil for exit 0);
// it returns an error when it did not exit.
func (s *Sidecar) Wait(d time.Duration) error {
	s.exitOnce.Do(func() {
		select {
		case s.exitErr = <-s.exited:
		case <-time.After(d):
			s.exitErr = fmt.Errorf("not exited after %s", d)
		}
	})
	return s.exitErr
}

// Status reads the sidecar process's /proc/PID/status fields in bytes (VmRSS, VmHWM)
// or as counted (Threads). It may be called from any goroutine: an error is reported
// with t.Error and gives an empty map.
func (s *Sidecar) Status(t testing.TB) map[string]float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Cmd.Process.Pid))
	if err != nil {
		t.Error(err)
		return map[string]float64{}
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(data), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			v *= 1024
		}
		out[name] = v
	}
	return out
}

// AdminStatus is the status of GET admin+path, 0 when it does not answer.
func (s *Sidecar) AdminStatus(path string) int {
	resp, err := http.Get(s.Admin + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Metrics scrapes /metrics into series → value (the series as the exposition writes it,
// for example `tokengate_decisions_total{decision="allowed",reason="ok",route="/"}`).
func (s *Sidecar) Metrics(t testing.TB) map[string]float64 {
	t.Helper()
	m, err := s.TryMetrics()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TryMetrics is Metrics for a goroutine other than the test's, which may not call
// t.Fatal.
func (s *Sidecar) TryMetrics() (map[string]float64, error) {
	resp, err := http.Get(s.Admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body), nil
}

func parseMetrics(r io.Reader) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// Sum adds the values of every series of a metric whose labels contain all of the
// given name="value" pairs.
func Sum(m map[string]float64, name string, labels ...string) float64 {
	var total float64
	for series, v := range m {
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(series, l) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// Eventually polls cond until it holds or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
