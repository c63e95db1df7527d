// Command image builds tokengate's OCI image without a Docker daemon, the same bytes
// for the same commit:
//
//	tools/image/build [-out DIR] [-version VERSION]
//
// It builds ./cmd/tokengate for linux/amd64 and linux/arm64 (CGO_ENABLED=0, -trimpath,
// VCS stamping on), puts each binary alone on an empty base with /etc/passwd and
// /etc/group naming user 65532, and writes into DIR (default .image at the repository's
// root):
//
//	oci/                                 an OCI image layout: the multi-platform index, tagged VERSION
//	tokengate-VERSION-linux-ARCH.tar     one platform's image, for docker load
//
// VERSION, the tag of ghcr.io/tokengate/tokengate, defaults to the chart's appVersion,
// which is the image the chart runs by default. Every time in the image is the
// commit's, read from the binary's build information. docs/install.md says how to push
// it and how to check that a build is reproducible.
package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// module is the project's module path: the root is the directory whose go.mod names it.
const module = "github.com/tokengate/tokengate"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tools/image:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("tools/image/build", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tools/image/build [flags]\n\nBuilds ghcr.io/tokengate/tokengate (linux/amd64, linux/arm64) from ./cmd/tokengate into\nan OCI layout (DIR/oci) and docker load tarballs (DIR/tokengate-VERSION-linux-ARCH.tar).\n\n")
		flags.PrintDefaults()
	}
	rootFlag := flags.String("root", "", "the repository's root (default: found upwards from the working directory)")
	out := flags.String("out", "", "the output `DIR` (default: ROOT/.image)")
	version := flags.String("version", "", "the image's tag and version label (default: the chart's appVersion)")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	root, err := findRoot(*rootFlag)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(root, ".image")
	}
	if *out, err = filepath.Abs(*out); err != nil {
		return err
	}
	if *version == "" {
		if *version, err = appVersion(root); err != nil {
			return err
		}
	}
	if _, err := name.NewTag(Repository+":"+*version, name.StrictValidation); err != nil {
		return fmt.Errorf("-version %q is not an image tag: %w", *version, err)
	}

	tmp, err := os.MkdirTemp("", "tokengate-image")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	leaks, err := buildPaths(ctx, root, tmp)
	if err != nil {
		return err
	}

	byPlatform := map[Platform]v1.Image{}
	var meta Meta
	var bins []built
	for _, p := range Platforms {
		path := filepath.Join(tmp, "tokengate-"+p.Arch)
		if err := goBuild(ctx, root, p, path, stderr); err != nil {
			return err
		}
		b, err := inspect(path, *version, leaks)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if len(bins) > 0 && (b.meta.Revision != bins[0].meta.Revision || !b.meta.Created.Equal(bins[0].meta.Created)) {
			return fmt.Errorf("%s was built from %s, %s from %s: was the tree changed during the build?", p, b.meta.Revision, Platforms[0], bins[0].meta.Revision)
		}
		meta = b.meta
		bins = append(bins, b)
		img, err := Image(p, b.data, meta)
		if err != nil {
			return err
		}
		byPlatform[p] = img
	}
	if strings.HasSuffix(meta.Revision, "-dirty") {
		fmt.Fprintf(stderr, "tools/image: warning: the work tree has changes that are not committed: the image is not the commit %s, and another build of that commit will differ\n", strings.TrimSuffix(meta.Revision, "-dirty"))
	}
	if bins[0].roots == "" {
		fmt.Fprintf(stderr, "tools/image: warning: the binary does not import %s and the image has no CA bundle: an https issuer needs caFile (docs/install.md)\n", fallbackRoots)
	}
	idx := Index(byPlatform, Platforms, meta)

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	layoutDir := filepath.Join(*out, "oci")
	if err := writeLayout(layoutDir, idx, meta); err != nil {
		return err
	}
	var tars []string
	for _, p := range Platforms {
		path := filepath.Join(*out, fmt.Sprintf("tokengate-%s-%s-%s.tar", meta.Version, p.OS, p.Arch))
		if err := writeTarball(path, byPlatform[p], meta); err != nil {
			return err
		}
		tars = append(tars, path)
	}

	return report(stdout, idx, byPlatform, bins, layoutDir, tars)
}

// report prints what was built: the name, the binary, the digests and sizes, and
// where each output is.
func report(w io.Writer, idx v1.ImageIndex, images map[Platform]v1.Image, bins []built, layoutDir string, tars []string) error {
	b := bins[0]
	line := func(key, format string, args ...any) {
		fmt.Fprintf(w, "  %-15s"+format+"\n", append([]any{key}, args...)...)
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintln(w, b.meta.Ref())
	line("binary", "tokengate %s, commit %s, %s, built with %s", b.modVersion, b.meta.Revision, b.meta.Created.UTC().Format(time.RFC3339), b.goVersion)
	if b.roots != "" {
		line("TLS roots", "built into the binary (%s %s)", fallbackRoots, b.roots)
	} else {
		line("TLS roots", "none (no CA bundle, and the binary does not import %s)", fallbackRoots)
	}
	line("index", "%s", digest)
	for i, p := range Platforms {
		d, err := images[p].Digest()
		if err != nil {
			return err
		}
		layers, err := images[p].Layers()
		if err != nil {
			return err
		}
		size, err := layers[0].Size()
		if err != nil {
			return err
		}
		line(p.String(), "%s  (binary %s, layer %s gzipped)", d, mb(int64(len(bins[i].data))), mb(size))
	}
	line("layout", "%s", layoutDir)
	for _, t := range tars {
		st, err := os.Stat(t)
		if err != nil {
			return err
		}
		line("docker tarball", "%s  (%s)", t, mb(st.Size()))
	}
	return nil
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// findRoot returns dir, or the first directory upwards from the working directory
// whose go.mod is the project's.
func findRoot(dir string) (string, error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", err
		}
		if !isRoot(abs) {
			return "", fmt.Errorf("-root %s: no go.mod of module %s there", dir, module)
		}
		return abs, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if isRoot(d) {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no go.mod of module %s in %s or above it: run from the repository, or give -root", module, wd)
		}
	}
}

func isRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == module
		}
	}
	return false
}

// appVersion is the chart's appVersion: the tag the chart runs unless told otherwise.
func appVersion(root string) (string, error) {
	path := filepath.Join(root, "charts", "tokengate", "Chart.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("the chart's appVersion, the default -version: %w", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "appVersion:"); ok {
			if v := strings.Trim(strings.TrimSpace(rest), `"'`); v != "" {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("%s has no appVersion: give -version", path)
}

// buildPaths are the directories of this machine that must not appear in a binary: the
// source tree, the Go installation, the module cache and the output directory.
func buildPaths(ctx context.Context, root, tmp string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOROOT", "GOMODCACHE").Output()
	if err != nil {
		return nil, fmt.Errorf("go env: %w", err)
	}
	paths := []string{root, tmp}
	for p := range strings.FieldsSeq(string(out)) {
		paths = append(paths, p)
	}
	return paths, nil
}

// goBuild builds the binary for one platform. The environment is fixed where it would
// change the bytes: no cgo, the architectures' baseline instruction sets, and none of
// the caller's GOFLAGS, experiments or FIPS mode. -trimpath keeps the machine's paths
// out; VCS stamping stays on (-buildvcs=true fails outside a git checkout) so that
// `tokengate version` tells the module version and the commit.
func goBuild(ctx context.Context, root string, p Platform, out string, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=true", "-o", out, "./cmd/tokengate")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"GOOS="+p.OS, "GOARCH="+p.Arch, "CGO_ENABLED=0",
		"GOAMD64=v1", "GOARM64=v8.0",
		"GOFLAGS=", "GOEXPERIMENT=", "GOFIPS140=off",
	)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s: %w", p, err)
	}
	return nil
}

// built is a binary and what its build information says.
type built struct {
	data                  []byte
	meta                  Meta
	modVersion, goVersion string
	// roots is the version of the module that builds Mozilla's roots into the binary,
	// empty when it does not: the image holds no CA bundle of its own.
	roots string
}

// fallbackRoots is the module whose package gives a binary TLS roots where the system
// has none, as in this image.
const fallbackRoots = "golang.org/x/crypto/x509roots/fallback"

// inspect reads the binary and its build information: the commit, its time and the
// module version become the image's; a binary that names a path of this machine, or
// whose module version is a release other than the image's, is refused.
func inspect(path, version string, leaks []string) (built, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return built{}, err
	}
	for _, p := range leaks {
		if len(p) > 1 && bytes.Contains(data, []byte(p)) {
			return built{}, fmt.Errorf("the binary contains the path %s of this machine: it would differ built elsewhere", p)
		}
	}
	info, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		return built{}, fmt.Errorf("build information: %w", err)
	}
	s := map[string]string{}
	for _, kv := range info.Settings {
		s[kv.Key] = kv.Value
	}
	if s["vcs"] != "git" || s["vcs.revision"] == "" || s["vcs.time"] == "" {
		return built{}, errors.New("the binary has no git revision and time in its build information: build from a git checkout")
	}
	created, err := time.Parse(time.RFC3339, s["vcs.time"])
	if err != nil {
		return built{}, fmt.Errorf("vcs.time: %w", err)
	}
	rev := s["vcs.revision"]
	if s["vcs.modified"] == "true" {
		rev += "-dirty"
	}
	// A tagged commit builds as its release version: an image of it tagged otherwise
	// (the chart's appVersion not bumped, say) would name another release.
	mv := info.Main.Version
	if strings.HasPrefix(mv, "v") && !strings.ContainsAny(mv, "-+") && strings.TrimPrefix(mv, "v") != version {
		return built{}, fmt.Errorf("the commit is release %s but the image would be tagged %s: bump the chart's appVersion, or give -version", mv, version)
	}
	b := built{data: data, meta: Meta{Version: version, Revision: rev, Created: created}, modVersion: mv, goVersion: info.GoVersion}
	for _, d := range info.Deps {
		if d.Path == fallbackRoots {
			b.roots = d.Version
		}
	}
	return b, nil
}

// writeLayout writes the OCI layout beside dir and moves it into place, so that dir is
// either the previous build or this one, never a mix.
func writeLayout(dir string, idx v1.ImageIndex, m Meta) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".oci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes it 0700
		return err
	}
	lp, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout: %w", err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(RefAnnotations(m))); err != nil {
		return fmt.Errorf("OCI layout: %w", err)
	}
	// go-containerregistry writes every file executable; nothing in a layout is.
	err = filepath.WalkDir(tmp, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chmod(path, 0o644)
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// writeTarball writes one platform's image as `docker save` does, named with the
// image's name.
func writeTarball(path string, img v1.Image, m Meta) error {
	ref, err := name.NewTag(m.Ref(), name.StrictValidation)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
