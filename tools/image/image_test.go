package main

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The commit's time; the tests give it in two time zones, as two machines might.
var commitTime = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func testMeta(loc *time.Location) Meta {
	return Meta{Version: "0.1.0", Revision: "0123456789abcdef0123456789abcdef01234567", Created: commitTime.In(loc)}
}

// fakeBinary stands in for tokengate: the tests are about everything around it.
var fakeBinary = []byte("\x7fELF not really a binary")

func buildAll(t *testing.T, m Meta) (v1.ImageIndex, map[Platform]v1.Image) {
	t.Helper()
	images := map[Platform]v1.Image{}
	for _, p := range Platforms {
		img, err := Image(p, fakeBinary, m)
		if err != nil {
			t.Fatal(err)
		}
		images[p] = img
	}
	return Index(images, Platforms, m), images
}

func TestLayer(t *testing.T) {
	data, err := rootFS(fakeBinary, commitTime.In(time.FixedZone("X", 3600)).Add(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want root, by number only", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(commitTime) || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: times %s %s %s, want only the commit's (whole seconds)", h.Name, h.ModTime, h.AccessTime, h.ChangeTime)
		}
		if len(h.PAXRecords) != 0 {
			t.Errorf("%s: PAX records %v", h.Name, h.PAXRecords)
		}
		want := int64(0o644)
		switch {
		case h.Typeflag == tar.TypeDir, h.Name == BinaryPath:
			want = 0o755
		}
		if h.Mode != want {
			t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, want)
		}
		body, _ := io.ReadAll(tr)
		switch h.Name {
		case BinaryPath:
			if !bytes.Equal(body, fakeBinary) {
				t.Errorf("%s is not the binary", h.Name)
			}
		case "etc/passwd":
			if !strings.Contains(string(body), "\nnonroot:x:65532:65532:") {
				t.Errorf("/etc/passwd has no nonroot user 65532 with group 65532:\n%s", body)
			}
		case "etc/group":
			if !strings.Contains(string(body), "\nnonroot:x:65532:") {
				t.Errorf("/etc/group has no group 65532:\n%s", body)
			}
		}
	}
	want := []string{"etc/", "etc/group", "etc/passwd", "etc/tokengate/", "usr/", "usr/bin/", "usr/bin/tokengate"}
	if !slices.Equal(names, want) {
		t.Errorf("entries %q, want %q (sorted, and nothing else)", names, want)
	}
}

func TestConfig(t *testing.T) {
	m := testMeta(time.UTC)
	for _, p := range Platforms {
		img, err := Image(p, fakeBinary, m)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		if cf.OS != p.OS || cf.Architecture != p.Arch || cf.Variant != p.Variant {
			t.Errorf("%s: config says %s/%s/%s", p, cf.OS, cf.Architecture, cf.Variant)
		}
		if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/usr/bin/tokengate"}) ||
			!slices.Equal(c.Cmd, []string{"sidecar", "--config", "/etc/tokengate/tokengate.yaml"}) {
			t.Errorf("%s: user %q, entrypoint %q, cmd %q", p, c.User, c.Entrypoint, c.Cmd)
		}
		if !cf.Created.Equal(commitTime) || len(cf.History) != 1 || !cf.History[0].Created.Equal(commitTime) {
			t.Errorf("%s: created %s, history %+v: want the commit's time only", p, cf.Created, cf.History)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"source", "version", "revision", "created", "title", "licenses", "description"} {
			k = "org.opencontainers.image." + k
			if c.Labels[k] == "" || m.Annotations[k] != c.Labels[k] {
				t.Errorf("%s: %s: label %q, annotation %q", p, k, c.Labels[k], m.Annotations[k])
			}
		}
		if got := c.Labels["org.opencontainers.image.created"]; got != "2026-03-04T05:06:07Z" {
			t.Errorf("created label %q", got)
		}
	}
}

// TestReproducible builds the image twice from the same inputs, with the commit's time
// in two zones, and writes each into its own directory: every file is the same. A
// different commit time gives another digest, so the time is really in there.
func TestReproducible(t *testing.T) {
	var trees []map[string][]byte
	var digests []v1.Hash
	for _, loc := range []*time.Location{time.UTC, time.FixedZone("UTC-7", -7*3600)} {
		m := testMeta(loc)
		idx, images := buildAll(t, m)
		dir := t.TempDir()
		out := filepath.Join(dir, "oci")
		if err := writeLayout(out, idx, m); err != nil {
			t.Fatal(err)
		}
		for _, p := range Platforms {
			if err := writeTarball(filepath.Join(dir, p.Arch+".tar"), images[p], m); err != nil {
				t.Fatal(err)
			}
		}
		trees = append(trees, readTree(t, dir))
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] {
		t.Errorf("index %s, then %s", digests[0], digests[1])
	}
	for name, data := range trees[0] {
		if !bytes.Equal(trees[1][name], data) {
			t.Errorf("%s differs between two builds", name)
		}
	}
	if len(trees[0]) != len(trees[1]) {
		t.Errorf("%d files, then %d", len(trees[0]), len(trees[1]))
	}

	later := testMeta(time.UTC)
	later.Created = later.Created.Add(time.Second)
	idx, _ := buildAll(t, later)
	if d, err := idx.Digest(); err != nil || d == digests[0] {
		t.Errorf("a later commit time gives the same index %s (%v)", d, err)
	}
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		out[rel] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReadBack reads what was written as the clients do: the layout's index by its
// tag, one image a platform, and the docker tarball as the same image.
func TestReadBack(t *testing.T) {
	m := testMeta(time.UTC)
	idx, images := buildAll(t, m)
	dir := t.TempDir()
	if err := writeLayout(filepath.Join(dir, "oci"), idx, m); err != nil {
		t.Fatal(err)
	}
	lp, err := layout.ImageIndexFromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := lp.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "0.1.0" ||
		im.Manifests[0].Annotations["io.containerd.image.name"] != "ghcr.io/tokengate/tokengate:0.1.0" {
		t.Fatalf("index.json: %+v, want the index %s named 0.1.0", im.Manifests, want)
	}
	inner, err := lp.ImageIndex(want)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := inner.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, d := range m2.Manifests {
		platforms = append(platforms, d.Platform.String())
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("platforms %q", platforms)
	}

	path := filepath.Join(dir, "amd64.tar")
	if err := writeTarball(path, images[Platforms[0]], m); err != nil {
		t.Fatal(err)
	}
	got, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	gd, _ := got.ConfigName()
	wd, _ := images[Platforms[0]].ConfigName()
	if gd != wd {
		t.Errorf("the tarball's config is %s, the image's %s", gd, wd)
	}
}

func TestAppVersion(t *testing.T) {
	root, err := findRoot("../..")
	if err != nil {
		t.Fatal(err)
	}
	v, err := appVersion(root)
	if err != nil || v == "" || strings.ContainsAny(v, `"' `) {
		t.Fatalf("appVersion %q, %v", v, err)
	}
}

func TestInspectRefusesMachinePaths(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(path, []byte("...panic in /home/someone/src/tokengate/main.go..."), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := inspect(path, "0.1.0", []string{"/home/someone/src/tokengate"})
	if err == nil || !strings.Contains(err.Error(), "/home/someone/src/tokengate") {
		t.Errorf("inspect: %v, want the path named", err)
	}
}
