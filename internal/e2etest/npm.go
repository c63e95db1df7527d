package e2etest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// npmStamp, in node_modules, holds the hash of what the last `npm ci` installed: the
// package files and the Node version.
const npmStamp = ".tokengate-npm-stamp"

// NPMInstall makes dir's node_modules hold exactly what its package-lock.json pins: it
// runs `npm ci` unless a stamp written after an earlier successful `npm ci`, for the
// same package files and Node version, says so already. what names the suite in
// messages; node must be at least minNode (a major version). It returns the Node
// version and how long `npm ci` took (0 when it did not run). Test binaries of several
// packages may call it at once: one installs, the others wait on a lock and find the
// stamp. It never skips: without node and npm on PATH it is an error saying what to
// install.
func NPMInstall(dir, what string, minNode int) (nodeVersion string, took time.Duration, err error) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", 0, fmt.Errorf("%s is not on PATH: %s needs Node.js %d or later with npm; install them (for example `apt-get install nodejs npm`)", tool, what, minNode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := exec.CommandContext(ctx, "node", "--version").Output()
	if err != nil {
		return "", 0, fmt.Errorf("node --version: %w", err)
	}
	nodeVersion = strings.TrimSpace(string(v))
	major, _, _ := strings.Cut(strings.TrimPrefix(nodeVersion, "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < minNode {
		return nodeVersion, 0, fmt.Errorf("node is %s: %s needs Node.js %d or later; install a newer nodejs", nodeVersion, what, minNode)
	}

	h := sha256.New()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nodeVersion, 0, err
		}
		h.Write(b)
	}
	h.Write([]byte(nodeVersion))
	want := hex.EncodeToString(h.Sum(nil))
	stamp := filepath.Join(dir, "node_modules", npmStamp)
	upToDate := func() bool { got, err := os.ReadFile(stamp); return err == nil && string(got) == want }
	if upToDate() {
		return nodeVersion, 0, nil
	}
	// npm ci never writes package-lock.json, so it carries the (advisory) lock.
	lock, err := os.Open(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return nodeVersion, 0, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nodeVersion, 0, fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if upToDate() {
		return nodeVersion, 0, nil
	}
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return nodeVersion, 0, fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
	}
	if err := os.WriteFile(stamp, []byte(want), 0o644); err != nil {
		return nodeVersion, 0, err
	}
	return nodeVersion, time.Since(start), nil
}
