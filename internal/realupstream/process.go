package realupstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
)

// The interpreters are Debian's, by absolute path: PATH may lead to another python3
// (pyenv's, without the Debian packages) or another java.
const (
	python3 = "/usr/bin/python3"
	java    = "/usr/bin/java"
	javac   = "/usr/bin/javac"
)

// tomcatJars are the Debian jars the Tomcat app compiles and runs against.
var tomcatJars = []string{
	"/usr/share/java/tomcat10-embed-core.jar",
	"/usr/share/java/jakarta-annotation-api.jar",
}

// debPackages are the Debian packages each kind needs; tools/debs pins their versions.
var debPackages = map[Kind][]string{
	Hypercorn: {"python3-hypercorn", "python3-starlette"},
	Tomcat:    {"libtomcat10-embed-java", "libjakarta-annotation-api-java", "openjdk-17-jdk-headless"},
}

// readyPrefix starts the line an upstream prints once it serves; JSON follows.
const readyPrefix = "REALUPSTREAM READY "

// readyLine is the JSON after readyPrefix. Port is 0 when the upstream serves on the
// socket it was handed.
type readyLine struct {
	Port    int    `json:"port"`
	Version string `json:"version"`
}

// startProcess starts the upstream of s.Kind as a child process in a process group of
// its own, and returns once it printed its ready line.
func startProcess(t testing.TB, s *Server) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("realupstream: %v", err)
	}
	dir := filepath.Join(root, "e2e", "upstreams", "testdata", string(s.Kind))
	requireDebs(t, root, s.Kind)

	var cmd *exec.Cmd
	// Hypercorn and Express serve on a socket listening before they start (fd 3), so
	// there is no window in which another process could take a port chosen for them.
	// Tomcat cannot be handed a socket without configuring it, so it binds port 0 and
	// says which port it got.
	var ln net.Listener
	switch s.Kind {
	case Hypercorn:
		// The access log only adds hypercorn's own lines to the log printed when a
		// test fails; everything else is hypercorn's default.
		cmd = exec.Command(python3, "-m", "hypercorn", "--bind", "fd://3", "--access-logfile", "-", "app:app")
		cmd.Env = pythonEnv()
		ln = listen(t)
	case Express:
		if err := setupExpress(t, dir); err != nil {
			t.Fatalf("realupstream: %v", err)
		}
		cmd = exec.Command("node", "server.mjs")
		cmd.Env = os.Environ()
		ln = listen(t)
	case Tomcat:
		classes := compileTomcat(t, dir)
		cp := strings.Join(append([]string{classes}, tomcatJars...), string(os.PathListSeparator))
		cmd = exec.Command(java, "-Xmx512m", "-cp", cp, "RealUpstream", s.recordsPath, t.TempDir())
		cmd.Env = os.Environ()
	}
	cmd.Dir = dir
	cmd.Env = append(cmd.Env, "REALUPSTREAM_RECORDS="+s.recordsPath)
	// A process group of its own, so that cleanup ends whatever the upstream started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	port := 0
	if ln != nil {
		port = ln.Addr().(*net.TCPAddr).Port
		f, err := ln.(*net.TCPListener).File()
		ln.Close() // f is a descriptor of its own of the same socket
		if err != nil {
			t.Fatalf("realupstream: listener file: %v", err)
		}
		cmd.ExtraFiles = []*os.File{f}
	}
	p, err := run(cmd, s.log)
	for _, f := range cmd.ExtraFiles {
		f.Close() // the child has its copy: the socket stays open while it runs
	}
	if err != nil {
		t.Fatalf("realupstream: starting %s: %v", s.Kind, err)
	}
	t.Cleanup(func() {
		if err := p.stop(10 * time.Second); err != nil {
			t.Errorf("realupstream: %s: %v", s.Kind, err)
		}
	})
	select {
	case r := <-p.ready:
		s.version = r.Version
		if port == 0 {
			port = r.Port
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "http://" + s.Addr
	case <-p.done:
		t.Fatalf("realupstream: %s exited before it was ready (%v):\n%s", s.Kind, cmd.ProcessState, tail(s.log.String(), 4000))
	case <-time.After(90 * time.Second):
		t.Fatalf("realupstream: %s printed no ready line within 90s:\n%s", s.Kind, tail(s.log.String(), 4000))
	}
}

// listen is a listening socket on a free loopback port, to hand to the upstream.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("realupstream: listen: %v", err)
	}
	return ln
}

// pythonEnv is this environment for Debian's python3: without what would point it at
// another Python's modules, and without writing bytecode into the source tree.
func pythonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PYTHONNOUSERSITE=1")
}

// process is a started upstream process whose output goes to a log.
type process struct {
	cmd   *exec.Cmd
	ready chan readyLine // receives the first ready line
	done  chan struct{}  // closed once the process exited and its output was read
}

// run starts cmd with its stdout and stderr copied into log line by line, watching for
// the ready line.
func run(cmd *exec.Cmd, log io.Writer) (*process, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	// The child (and whatever it starts) holds the write end now: the read end sees EOF
	// when they have all exited.
	w.Close()
	p := &process{cmd: cmd, ready: make(chan readyLine, 1), done: make(chan struct{})}
	var output sync.WaitGroup
	output.Go(func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = log.Write(append(line, '\n'))
			if rest, ok := bytes.CutPrefix(line, []byte(readyPrefix)); ok && !sent {
				var rl readyLine
				if err := json.Unmarshal(rest, &rl); err != nil {
					fmt.Fprintf(log, "realupstream: bad ready line: %v\n", err)
					continue
				}
				p.ready <- rl
				sent = true
			}
		}
		if err := sc.Err(); err != nil {
			fmt.Fprintf(log, "realupstream: reading output: %v\n", err)
			_, _ = io.Copy(log, r) // drain, so that the writers never block
		}
	})
	go func() {
		_ = cmd.Wait()
		output.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop kills the process group and waits up to d for the process to be gone.
func (p *process) stop(d time.Duration) error {
	// Negative pid: the whole group. An error means it is gone already.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(d):
		return fmt.Errorf("pid %d still running %s after SIGKILL to its group", p.cmd.Process.Pid, d)
	}
}

// moduleRoot is the directory of tokengate's go.mod, found upwards from the working
// directory (a test's is its package's).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/tokengate/tokengate\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the tokengate module: no go.mod of github.com/tokengate/tokengate above the working directory")
		}
		dir = parent
	}
}

// requireDebs fails the test, naming what to install, when a Debian package that kind
// needs is not installed.
func requireDebs(t testing.TB, root string, kind Kind) {
	t.Helper()
	pkgs := debPackages[kind]
	if len(pkgs) == 0 {
		return
	}
	// dpkg-query exits 1 when it knows some package not at all: the output still
	// lists the others. Only a dpkg-query that did not run is an error.
	out, err := exec.Command("dpkg-query", append([]string{"-W", "-f", "${Package} ${db:Status-Status}\n"}, pkgs...)...).Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("realupstream: the %s upstream needs the Debian packages %s, and dpkg-query, which checks for them, did not run: %v", kind, strings.Join(pkgs, ", "), err)
	}
	installed := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		if name, status, ok := strings.Cut(strings.TrimSpace(line), " "); ok && status == "installed" {
			installed[name] = true
		}
	}
	var missing []string
	for _, p := range pkgs {
		if !installed[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return
	}
	// tools/debs --check names the pinned versions.
	check, _ := exec.Command(filepath.Join(root, "tools", "debs"), "--check").CombinedOutput()
	t.Fatalf("realupstream: the %s upstream needs the Debian packages %s, which are not installed: run `tools/debs` as root (from %s); it installs the pinned versions:\n%s",
		kind, strings.Join(missing, ", "), root, check)
}

// compileTomcat compiles the Tomcat app into a temporary directory and returns it.
func compileTomcat(t testing.TB, dir string) string {
	t.Helper()
	for _, f := range append([]string{java, javac}, tomcatJars...) {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("realupstream: the Tomcat upstream needs %s: run `tools/debs` as root (it installs libtomcat10-embed-java, libjakarta-annotation-api-java and openjdk-17-jdk-headless): %v", f, err)
		}
	}
	classes := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, javac, "-encoding", "UTF-8", "-d", classes,
		"-cp", strings.Join(tomcatJars, string(os.PathListSeparator)), "RealUpstream.java")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("realupstream: javac RealUpstream.java: %v\n%s", err, out)
	}
	t.Logf("realupstream: javac took %s", time.Since(start).Round(time.Millisecond))
	return classes
}

var (
	expressOnce sync.Once
	expressErr  error
)

// setupExpress installs the Express app's packages once per test binary, with
// `npm ci` when node_modules does not hold what package-lock.json pins.
func setupExpress(t testing.TB, dir string) error {
	t.Helper()
	expressOnce.Do(func() {
		node, took, err := e2etest.NPMInstall(dir, "the Express upstream", 18)
		if err == nil && took > 0 {
			t.Logf("realupstream: node %s; npm ci took %s", node, took.Round(time.Millisecond))
		}
		expressErr = err
	})
	return expressErr
}
