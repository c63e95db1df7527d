//go:build e2e

// Package image runs tokengate's OCI image the way a cluster runs it. The image is built
// by the project's own command (tools/image/build), twice, to show that the same commit
// gives the same digest; the host's platform is taken from the multi-platform layout
// with skopeo, unpacked with umoci into an OCI bundle, and run with runc as root of the
// host, with the container's process as the injector makes it: the arguments, user,
// read-only root file system, dropped capabilities, memory limit and read-only
// configuration mount that sidecar/inject gives the sidecar. It shares the host's
// network namespace, so that the sidecar, its upstream and its authorization server
// all listen on 127.0.0.1.
//
//	tools/debs && go test -tags e2e -v ./e2e/image/
//
// runc, umoci and skopeo come from Debian, pinned in tools/debs; without them, or
// without root, the test fails and says what to do.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/sidecar/inject"
)

const audience = "https://orders.example.com"

func TestImage(t *testing.T) {
	requireRuntime(t)
	root := moduleRoot(t)
	commit := strings.TrimSpace(run(t, time.Minute, root, "git", "rev-parse", "HEAD"))
	commitTime, err := strconv.ParseInt(strings.TrimSpace(run(t, time.Minute, root, "git", "show", "-s", "--format=%ct", "HEAD")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}

	// Built twice, into two directories: the same commit gives the same bytes.
	out := t.TempDir()
	first := buildImage(t, root, out)
	again := buildImage(t, root, t.TempDir())
	t.Logf("builds: %s (first), %s (again)", first.took.Round(time.Second), again.took.Round(time.Second))
	if first.indexDigest != again.indexDigest {
		t.Errorf("two builds of the same tree: index %s, then %s (did the work tree change between them?)", first.indexDigest, again.indexDigest)
	}
	for name, sum := range first.tarSums {
		if again.tarSums[name] != sum {
			t.Errorf("two builds of the same tree: %s is sha256:%s, then sha256:%s", name, sum, again.tarSums[name])
		}
	}
	t.Logf("index %s (ref %s)", first.indexDigest, first.ref)

	// What the image says about itself: the chart's default image, this commit.
	img := first.platform(t, runtime.GOARCH)
	cfg := img.config.Config
	chartImage := chartDefaultImage(t, root)
	if first.ref != chartImage {
		t.Errorf("the layout names %s; the chart runs %s by default", first.ref, chartImage)
	}
	if cfg.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cfg.User)
	}
	if want := []string{"/usr/bin/tokengate"}; !slices.Equal(cfg.Entrypoint, want) {
		t.Errorf("entrypoint %q, want %q", cfg.Entrypoint, want)
	}
	if want := []string{"sidecar", "--config", inject.ConfigMountDir + "/" + inject.ConfigFileKey}; !slices.Equal(cfg.Cmd, want) {
		t.Errorf("cmd %q, want %q (the file the chart mounts)", cfg.Cmd, want)
	}
	labels := cfg.Labels
	revision := labels["org.opencontainers.image.revision"]
	if revision != commit && revision != commit+"-dirty" {
		t.Errorf("revision label %q, want the commit %s", revision, commit)
	}
	created, err := time.Parse(time.RFC3339, labels["org.opencontainers.image.created"])
	if err != nil || created.Unix() != commitTime || !img.config.Created.Equal(created) {
		t.Errorf("created label %q (%v), config created %s: want the commit's time %s", labels["org.opencontainers.image.created"], err, img.config.Created, time.Unix(commitTime, 0).UTC())
	}
	for _, k := range []string{"source", "version", "revision", "created", "title", "licenses", "description"} {
		k = "org.opencontainers.image." + k
		if labels[k] == "" || img.manifest.Annotations[k] != labels[k] {
			t.Errorf("%s: label %q, annotation %q", k, labels[k], img.manifest.Annotations[k])
		}
	}
	if v := labels["org.opencontainers.image.version"]; !strings.HasSuffix(first.ref, ":"+v) {
		t.Errorf("version label %q, but the image is %s", v, first.ref)
	}

	// The docker load tarball is the same image: skopeo reads it as docker save's format.
	tarPath := filepath.Join(out, fmt.Sprintf("tokengate-%s-linux-%s.tar", labels["org.opencontainers.image.version"], runtime.GOARCH))
	if raw := run(t, time.Minute, "", "skopeo", "inspect", "--config", "--raw", "docker-archive:"+tarPath); sha(raw) != img.manifest.Config.Digest {
		t.Errorf("%s holds config %s, the layout %s", tarPath, sha(raw), img.manifest.Config.Digest)
	}
	if tags := repoTags(t, tarPath); !slices.Equal(tags, []string{first.ref}) {
		t.Errorf("%s is tagged %q, want %s", tarPath, tags, first.ref)
	}

	// The host's platform, as a client pulls it (skopeo picks it from the index), unpacked.
	work := t.TempDir()
	run(t, time.Minute, "", "skopeo", "copy", "oci:"+filepath.Join(out, "oci")+":"+labels["org.opencontainers.image.version"], "oci:"+filepath.Join(work, "host")+":run")
	bundle := filepath.Join(work, "bundle")
	run(t, 2*time.Minute, "", "umoci", "unpack", "--image", filepath.Join(work, "host")+":run", bundle)

	// The world around the sidecar, on 127.0.0.1: an API and two authorization servers,
	// one with its JWKS over plain http (allowed on loopback), one over https with a
	// private CA, which the image trusts only through caFile: it has no CA bundle.
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	tlsAS, err := jwkstest.NewServer(jwkstest.WithAudience(audience), jwkstest.WithTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tlsAS.Close)
	api := upstreamtest.Start(t)
	_, apiPort, _ := net.SplitHostPort(strings.TrimPrefix(api.URL, "http://"))
	listen, admin := port(t, e2etest.FreeAddr(t)), port(t, e2etest.FreeAddr(t))

	// The container the injector makes for a pod that asks for tokengate.
	c := injected(t, first.ref, apiPort, listen, admin)
	cfgDir := filepath.Join(work, "configmap")
	if err := os.Mkdir(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`realm: orders-api
issuers:
  - issuer: %q
    audiences: [%q]
  - issuer: %q
    audiences: [%q]
    caFile: %s
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
forward:
  claims: {sub: X-Auth-Subject, scope: X-Auth-Scopes}
  removeAuthorization: true
`, as.URL, audience, tlsAS.URL, audience, inject.ConfigMountDir+"/ca.pem")
	for name, data := range map[string][]byte{inject.ConfigFileKey: []byte(config), "ca.pem": tlsAS.CertPEM()} {
		if err := os.WriteFile(filepath.Join(cfgDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctr := start(t, bundle, c, cfg.Entrypoint, cfgDir, listen, admin)

	// /readyz on the admin port: the configuration is loaded and the issuer's keys fetched.
	adminURL := "http://127.0.0.1:" + admin
	ctr.waitReady(t, adminURL+"/readyz")
	if s := status(t, adminURL+"/readyz", ""); s != http.StatusOK {
		t.Errorf("/readyz: %d", s)
	}

	// Allowed: a valid token of either issuer reaches the API, with the identity the
	// sidecar sets.
	url := "http://127.0.0.1:" + listen + "/orders/42"
	for name, issuer := range map[string]*jwkstest.Server{"http issuer": as, "https issuer": tlsAS} {
		before := api.Count()
		if s := status(t, url, issuer.MustMint(jwkstest.Claims{"scope": "orders:read"})); s != http.StatusOK {
			t.Errorf("valid token of the %s: %d, want 200", name, s)
		}
		if api.Count() != before+1 {
			t.Errorf("valid token of the %s: %d requests reached the API, want 1", name, api.Count()-before)
		} else if r := api.Last(); r.Path != "/orders/42" || r.Header.Get("X-Auth-Scopes") != "orders:read" || r.Header.Get("Authorization") != "" {
			t.Errorf("the API got %s with X-Auth-Scopes %q and Authorization %q", r.Path, r.Header.Get("X-Auth-Scopes"), r.Header.Get("Authorization"))
		}
	}
	// Denied: no token is a 401, and nothing reaches the API.
	before := api.Count()
	if s := status(t, url, ""); s != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", s)
	}
	if api.Count() != before {
		t.Errorf("no token: %d requests reached the API, want none", api.Count()-before)
	}

	// The process, seen from the host: user and group 65532, no capabilities, no way to
	// gain privileges.
	pid := ctr.pid(t)
	st := procStatus(t, pid)
	for _, k := range []string{"Uid", "Gid"} {
		if f := strings.Fields(st[k]); len(f) != 4 || f[0] != "65532" || f[1] != "65532" || f[2] != "65532" || f[3] != "65532" {
			t.Errorf("%s of the container's process: %q, want 65532 (real, effective, saved, file system)", k, st[k])
		}
	}
	if st["CapEff"] != "0000000000000000" || st["CapPrm"] != "0000000000000000" || st["NoNewPrivs"] != "1" {
		t.Errorf("capabilities: effective %s, permitted %s, NoNewPrivs %s: want none and 1", st["CapEff"], st["CapPrm"], st["NoNewPrivs"])
	}
	// Its root is read-only: the mount says so, and even the host's root cannot write
	// through it; so is the configuration mount.
	if opts := mountOptions(t, pid, "/"); !strings.HasPrefix(opts, "ro,") && opts != "ro" {
		t.Errorf("the container's / is mounted %q, want ro", opts)
	}
	for _, dir := range []string{"/", inject.ConfigMountDir} {
		err := os.WriteFile(filepath.Join(fmt.Sprintf("/proc/%d/root", pid), dir, "probe"), nil, 0o644)
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("writing into the container's %s: %v, want a read-only file system", dir, err)
		}
	}

	// tokengate version, inside the container, names the commit the image says it is.
	version := ctr.exec(t, "/usr/bin/tokengate", "version")
	if !strings.Contains(version, "commit: "+revision+"\n") || strings.Contains(version, "v0.0.0-dev") {
		t.Errorf("tokengate version in the container:\n%s\nwant commit %s and a module version", version, revision)
	}
	t.Logf("tokengate version in the container:\n%s", version)

	// SIGTERM, as the kubelet sends it: the sidecar drains and exits 0.
	if code := ctr.stop(t); code != 0 {
		t.Errorf("after SIGTERM the container exited %d, want 0", code)
	}
}

// requireRuntime fails, never skips, when the test cannot run containers here.
func requireRuntime(t *testing.T) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"runc", "umoci", "skopeo"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%s not found: run tools/debs as root, which installs runc, umoci and skopeo at the versions it pins", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the test runs containers with runc as root (the container's process runs as 65532): run it as root")
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	gomod := strings.TrimSpace(run(t, time.Minute, "", "go", "env", "GOMOD"))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("not in the tokengate module")
	}
	return filepath.Dir(gomod)
}

// run runs a command, bounded by d, and returns its standard output; it fails the test
// with its output when the command fails.
func run(t *testing.T, d time.Duration, dir, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v (limit %s)\n%s%s", name, strings.Join(args, " "), err, d, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// build is one run of tools/image/build.
type build struct {
	dir         string // the output directory
	ref         string // the image's name, as the layout's index.json gives it
	indexDigest string
	tarSums     map[string]string // docker load tarball → its sha256
	took        time.Duration
}

func buildImage(t *testing.T, root, out string) build {
	t.Helper()
	start := time.Now()
	// A cold build compiles the module twice (amd64 and arm64): minutes on 2 cores.
	stdout := run(t, 15*time.Minute, root, filepath.Join(root, "tools", "image", "build"), "-out", out)
	b := build{dir: out, took: time.Since(start), tarSums: map[string]string{}}
	t.Logf("tools/image/build -out %s:\n%s", out, stdout)
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	readJSON(t, filepath.Join(out, "oci", "index.json"), &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("%s/oci/index.json has %d entries, want the one multi-platform index", out, len(index.Manifests))
	}
	b.indexDigest, b.ref = index.Manifests[0].Digest, index.Manifests[0].Annotations["io.containerd.image.name"]
	tars, err := filepath.Glob(filepath.Join(out, "tokengate-*.tar"))
	if err != nil || len(tars) != 2 {
		t.Fatalf("%s: docker load tarballs %q (%v), want one for amd64 and one for arm64", out, tars, err)
	}
	for _, p := range tars {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		b.tarSums[filepath.Base(p)] = hex.EncodeToString(sum[:])
	}
	return b
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func (b build) blob(t *testing.T, digest string, v any) {
	t.Helper()
	readJSON(t, filepath.Join(b.dir, "oci", "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")), v)
}

// platformImage is one platform's manifest and config, as the layout holds them.
type platformImage struct {
	manifest struct {
		Config      struct{ Digest string } `json:"config"`
		Annotations map[string]string       `json:"annotations"`
	}
	config struct {
		Created time.Time `json:"created"`
		Config  struct {
			User       string
			Entrypoint []string
			Cmd        []string
			Labels     map[string]string
		} `json:"config"`
	}
}

func (b build) platform(t *testing.T, arch string) platformImage {
	t.Helper()
	var index struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	b.blob(t, b.indexDigest, &index)
	var got []string
	for _, m := range index.Manifests {
		got = append(got, m.Platform.OS+"/"+m.Platform.Architecture)
		if m.Platform.OS == "linux" && m.Platform.Architecture == arch {
			var img platformImage
			b.blob(t, m.Digest, &img.manifest)
			b.blob(t, img.manifest.Config.Digest, &img.config)
			return img
		}
	}
	t.Fatalf("the index has %q, not linux/%s", got, arch)
	return platformImage{}
}

// chartDefaultImage is the image the chart runs when its values are left alone: the
// repository, and the tag or else the chart's appVersion.
func chartDefaultImage(t *testing.T, root string) string {
	t.Helper()
	var values struct {
		Image struct{ Repository, Tag string }
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	for path, v := range map[string]any{"values.yaml": &values, "Chart.yaml": &chart} {
		data, err := os.ReadFile(filepath.Join(root, "charts", "tokengate", path))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	tag := values.Image.Tag
	if tag == "" {
		tag = chart.AppVersion
	}
	return values.Image.Repository + ":" + tag
}

// repoTags are the names a docker load of the tarball gives the image.
func repoTags(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no manifest.json: %v", path, err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil || len(m) != 1 {
			t.Fatalf("%s: manifest.json: %v (%d images)", path, err, len(m))
		}
		return m[0].RepoTags
	}
}

// injected is the container sidecar/inject adds to a pod that asks for tokengate with
// these ports and the chart's defaults.
func injected(t *testing.T, image, upstreamPort, listen, admin string) corev1.Container {
	t.Helper()
	pod := &corev1.Pod{}
	pod.Labels = map[string]string{inject.LabelInject: "true"}
	pod.Annotations = map[string]string{
		inject.AnnotationUpstreamPort: upstreamPort,
		inject.AnnotationConfig:       "orders-tokengate",
		inject.AnnotationPort:         listen,
		inject.AnnotationAdminPort:    admin,
	}
	pod.Spec.Containers = []corev1.Container{{Name: "api"}}
	ops, outcome, err := inject.Patch(pod, inject.Defaults{Image: image})
	if err != nil || outcome != inject.Injected {
		t.Fatalf("inject.Patch: %s, %v", outcome, err)
	}
	for _, op := range ops {
		if cs, ok := op.Value.([]corev1.Container); ok && op.Path == "/spec/initContainers" && len(cs) == 1 {
			return cs[0]
		}
	}
	t.Fatalf("inject.Patch added no init container: %+v", ops)
	return corev1.Container{}
}

// container is a `runc run` the test started, in the foreground: runc's exit is the
// container's.
type container struct {
	id, state string
	user      string // uid:gid of the container's process
	cmd       *exec.Cmd
	log       *os.File
	exited    chan struct{}
	code      int // the exit code, once exited is closed
	stopOnce  sync.Once
}

// start runs the bundle as Kubernetes would run c: the image's entrypoint with c's
// arguments (and only 127.0.0.1 to listen on, which a pod's own network namespace
// gives the sidecar and the host's does not), c's user with the group of that user in
// the image's /etc/passwd (what containerd does when runAsGroup is not set), c's
// read-only root, privilege escalation, capabilities (none) and memory limit (also its
// GOMEMLIMIT), and cfgDir mounted as c's configuration volume. The network namespace is
// the host's. The container is stopped and deleted when the test ends.
func start(t *testing.T, bundle string, c corev1.Container, entrypoint []string, cfgDir, listen, admin string) *container {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.RunAsUser == nil || sc.ReadOnlyRootFilesystem == nil || sc.AllowPrivilegeEscalation == nil || len(c.VolumeMounts) != 1 || len(c.Command) != 0 {
		t.Fatalf("the injected container is not what this test knows how to run: %+v", c)
	}
	uid := *sc.RunAsUser
	gid := passwdGroup(t, filepath.Join(bundle, "rootfs", "etc", "passwd"), uid)
	limit := c.Resources.Limits.Memory().Value()

	var spec map[string]any
	specPath := filepath.Join(bundle, "config.json")
	readJSON(t, specPath, &spec)
	process := spec["process"].(map[string]any)
	process["terminal"] = false
	process["args"] = append(append(append([]string{}, entrypoint...), c.Args...), "--listen=127.0.0.1:"+listen, "--admin=127.0.0.1:"+admin)
	process["user"] = map[string]any{"uid": uid, "gid": gid}
	process["env"] = append(anyStrings(process["env"]), fmt.Sprintf("GOMEMLIMIT=%d", limit))
	process["noNewPrivileges"] = !*sc.AllowPrivilegeEscalation
	if caps := sc.Capabilities; caps == nil || len(caps.Add) != 0 || len(caps.Drop) != 1 || caps.Drop[0] != "ALL" {
		t.Fatalf("the injected container's capabilities are %+v, not drop ALL", caps)
	}
	process["capabilities"] = map[string]any{"bounding": []string{}, "effective": []string{}, "inheritable": []string{}, "permitted": []string{}, "ambient": []string{}}
	spec["root"] = map[string]any{"path": "rootfs", "readonly": *sc.ReadOnlyRootFilesystem}
	m := c.VolumeMounts[0]
	opts := []string{"rbind", "nosuid", "nodev", "noexec"}
	if m.ReadOnly {
		opts = append(opts, "ro")
	}
	spec["mounts"] = append(spec["mounts"].([]any), map[string]any{"destination": m.MountPath, "type": "bind", "source": cfgDir, "options": opts})
	linux := spec["linux"].(map[string]any)
	var namespaces []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] != "network" {
			namespaces = append(namespaces, ns)
		}
	}
	linux["namespaces"] = namespaces
	resources, _ := linux["resources"].(map[string]any)
	if resources == nil {
		resources = map[string]any{}
	}
	resources["memory"] = map[string]any{"limit": limit}
	linux["resources"] = resources
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(specPath, data, 0o600); err != nil {
		t.Fatal(err)
	}

	log, err := os.Create(filepath.Join(t.TempDir(), "container.log"))
	if err != nil {
		t.Fatal(err)
	}
	ctr := &container{
		id:     fmt.Sprintf("tokengate-e2e-%d-%d", os.Getpid(), time.Now().UnixNano()),
		user:   fmt.Sprintf("%d:%d", uid, gid),
		state:  t.TempDir(),
		log:    log,
		exited: make(chan struct{}),
	}
	// A file, not a pipe, for the container's output: the container holds it, and
	// Wait would otherwise wait for the container's descendants to close a pipe.
	ctr.cmd = exec.Command("runc", "--root", ctr.state, "run", "--bundle", bundle, ctr.id)
	ctr.cmd.Stdout, ctr.cmd.Stderr = log, log
	if err := ctr.cmd.Start(); err != nil {
		t.Fatalf("runc run: %v", err)
	}
	go func() {
		_ = ctr.cmd.Wait()
		ctr.code = ctr.cmd.ProcessState.ExitCode()
		close(ctr.exited)
	}()
	t.Cleanup(func() {
		ctr.stop(t)
		// delete --force also kills what is left, should stop have given up.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "runc", "--root", ctr.state, "delete", "--force", ctr.id).CombinedOutput(); err != nil {
			t.Errorf("runc delete: %v\n%s", err, out)
		}
		if t.Failed() {
			t.Logf("container output (last 4000 bytes):\n%s", ctr.output(4000))
		}
		log.Close()
	})
	return ctr
}

func anyStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// passwdGroup is uid's primary group in an /etc/passwd.
func passwdGroup(t *testing.T, path string, uid int64) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the image's /etc/passwd: %v", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[2] == strconv.FormatInt(uid, 10) {
			gid, err := strconv.ParseInt(f[3], 10, 64)
			if err != nil {
				t.Fatalf("the image's /etc/passwd: %q: %v", line, err)
			}
			return gid
		}
	}
	t.Fatalf("the image's /etc/passwd has no user %d:\n%s", uid, data)
	return 0
}

func (c *container) output(n int) string {
	data, _ := os.ReadFile(c.log.Name())
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// waitReady polls url until it answers 200, for at most 60 s, and fails at once when
// the container exits: then this machine could not run it.
func (c *container) waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-c.exited:
			t.Fatalf("the container exited (runc: %d) before %s answered 200; if runc itself failed, this machine cannot run containers:\n%s", c.code, url, c.output(4000))
		case <-deadline:
			t.Fatalf("%s did not answer 200 within 60 s (last: %v)", url, err)
		case <-tick.C:
		}
	}
}

// pid is the container's init process on the host, from runc state.
func (c *container) pid(t *testing.T) int {
	t.Helper()
	var st struct {
		Status string `json:"status"`
		Pid    int    `json:"pid"`
	}
	if err := json.Unmarshal([]byte(run(t, 20*time.Second, "", "runc", "--root", c.state, "state", c.id)), &st); err != nil {
		t.Fatalf("runc state: %v", err)
	}
	if st.Status != "running" || st.Pid <= 0 {
		t.Fatalf("runc state: %s, pid %d", st.Status, st.Pid)
	}
	return st.Pid
}

// exec runs a command in the running container, as the container's user.
func (c *container) exec(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, 30*time.Second, "", "runc", append([]string{"--root", c.state, "exec", "--user", c.user, c.id}, args...)...)
}

// stop sends SIGTERM and waits up to 40 s (the sidecar's 25 s drain bound, and room)
// for the container to exit, then kills it; it returns the exit code. Only the first
// call acts.
func (c *container) stop(t *testing.T) int {
	t.Helper()
	c.stopOnce.Do(func() {
		for _, sig := range []struct {
			name string
			wait time.Duration
		}{{"TERM", 40 * time.Second}, {"KILL", 10 * time.Second}} {
			select {
			case <-c.exited:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			out, err := exec.CommandContext(ctx, "runc", "--root", c.state, "kill", c.id, sig.name).CombinedOutput()
			cancel()
			if err != nil {
				t.Logf("runc kill %s: %v: %s", sig.name, err, out)
			}
			select {
			case <-c.exited:
				return
			case <-time.After(sig.wait):
				t.Errorf("the container had not exited %s after SIG%s", sig.wait, sig.name)
			}
		}
		// Neither signal ended it: end runc itself, which the test started.
		_ = c.cmd.Process.Kill()
		<-c.exited
	})
	select {
	case <-c.exited:
		return c.code
	default:
		return -1
	}
}

func status(t *testing.T, url, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// procStatus is /proc/PID/status as name → value.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// mountOptions are the per-mount options of the mount at point, as the process sees
// its mounts (/proc/PID/mountinfo; the last mount at a point is the one in effect).
func mountOptions(t *testing.T, pid int, point string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	opts := ""
	for line := range strings.SplitSeq(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == point {
			opts = f[5]
		}
	}
	if opts == "" {
		t.Fatalf("no mount at %s in the container:\n%s", point, data)
	}
	return opts
}
