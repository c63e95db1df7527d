package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image is. The chart's injector (sidecar/inject/patch.go) sets the container's
// args, runs it as user 65532 with a read-only root file system, and mounts the
// ConfigMap at /etc/tokengate; the image fits that: its entrypoint is the binary, its
// user 65532, and its default command the sidecar with the file the chart mounts.
const (
	Repository = "ghcr.io/tokengate/tokengate"
	BinaryPath = "usr/bin/tokengate" // in the layer, without the leading slash
	ConfigDir  = "etc/tokengate"     // the chart's mount point (inject.ConfigMountDir)
	ConfigFile = "/etc/tokengate/tokengate.yaml"
	User       = "65532:65532" // the distroless "nonroot" user, the chart's RunAsUser
	Source     = "https://github.com/tokengate/tokengate"
)

// passwd and group name the users a non-root static program may look up: root, who owns
// every file, and nonroot (65532), who runs the binary and owns nothing.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group  = "root:x:0:\nnonroot:x:65532:\n"
)

// Platform is one platform of the image.
type Platform struct {
	OS, Arch, Variant string
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Platforms are the platforms the image is built for. arm64's variant v8 is what
// registries and runtimes record for 64-bit ARM; the binary is built for its baseline.
var Platforms = []Platform{{"linux", "amd64", ""}, {"linux", "arm64", "v8"}}

// Meta is what the image says about itself. Every time in the image is Created: the
// commit's time, so that the same commit gives the same bytes.
type Meta struct {
	Version  string    // the image's tag and org.opencontainers.image.version
	Revision string    // the commit (with -dirty when the tree had changes), as in the binary
	Created  time.Time // the commit's time
}

// Labels are the OCI annotations of the image, also its config's labels.
func (m Meta) Labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "tokengate",
		"org.opencontainers.image.description": "tokengate guards APIs that accept OAuth 2.0 access tokens: a reverse proxy that checks bearer JWTs, and the Kubernetes admission webhook that injects it.",
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.version":     m.Version,
		"org.opencontainers.image.revision":    m.Revision,
		"org.opencontainers.image.created":     m.Created.UTC().Format(time.RFC3339),
	}
}

// Ref is the image's name with its tag.
func (m Meta) Ref() string { return Repository + ":" + m.Version }

// entry is one file or directory of the layer.
type entry struct {
	name string // without a leading slash; a directory's ends in "/"
	mode int64
	data []byte
}

// rootFS is the layer's tar: the binary, /etc/passwd, /etc/group and the configuration
// mount point. Entries are sorted by name, owned by root (so the nonroot user can write
// nothing), with fixed modes and the commit's time as their only time: nothing of the
// machine that built it (owner, umask, clock, path) reaches the bytes.
func rootFS(binary []byte, mtime time.Time) ([]byte, error) {
	entries := []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: ConfigDir + "/", mode: 0o755},
		{name: "usr/", mode: 0o755},
		{name: "usr/bin/", mode: 0o755},
		{name: BinaryPath, mode: 0o755, data: binary},
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			ModTime: mtime.UTC().Truncate(time.Second),
			// USTAR holds everything here (short names, whole seconds), and writes no
			// access or change time that PAX would.
			Format: tar.FormatUSTAR,
		}
		if e.name[len(e.name)-1] == '/' {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// Image is one platform's image: a single layer on nothing (scratch).
func Image(p Platform, binary []byte, m Meta) (v1.Image, error) {
	fs, err := rootFS(binary, m.Created)
	if err != nil {
		return nil, err
	}
	// The layer is gzipped by go-containerregistry; Go's gzip writes no time or name
	// into its header, so the compressed bytes depend on the tar alone.
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(fs)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("%s: layer: %w", p, err)
	}
	created := v1.Time{Time: m.Created.UTC()}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: p.Arch,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      created,
		Config: v1.Config{
			Entrypoint: []string{"/" + BinaryPath},
			Cmd:        []string{"sidecar", "--config", ConfigFile},
			User:       User,
			Env:        []string{"PATH=/usr/bin"},
			WorkingDir: "/",
			// The sidecar's default listen and admin ports (policy.DefaultListen,
			// DefaultAdmin), the chart's tokengate and tokengate-admin ports.
			ExposedPorts: map[string]struct{}{"8000/tcp": {}, "9090/tcp": {}},
			Labels:       m.Labels(),
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", p, err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   created,
			CreatedBy: "tools/image: /" + BinaryPath + " (go build -trimpath, CGO_ENABLED=0), /etc/passwd, /etc/group, /" + ConfigDir + "/",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return mutate.Annotations(img, m.Labels()).(v1.Image), nil
}

// Index is the multi-platform image: an OCI index of one image a platform, in the
// order of the platforms given.
func Index(images map[Platform]v1.Image, order []Platform, m Meta) v1.ImageIndex {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range order {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: images[p],
			Descriptor: v1.Descriptor{
				Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant},
			},
		})
	}
	return mutate.Annotations(idx, m.Labels()).(v1.ImageIndex)
}

// RefAnnotations name the index in the layout's index.json: the tag, as skopeo, umoci
// and crane read it (oci:DIR:TAG), and the whole name, as containerd imports it.
func RefAnnotations(m Meta) map[string]string {
	return map[string]string{
		"org.opencontainers.image.ref.name": m.Version,
		"io.containerd.image.name":          m.Ref(),
	}
}
