package inject

import (
	"path"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// TokenFileName is the name of the file, in ClientTokenDir, that holds the token for an
// audience: the audience with every character other than an ASCII letter, a digit, "-",
// "_" or "." replaced by "_", and a leading "." too (so that no name is hidden or
// reserved by the kubelet, which keeps its own "..data"). An audience that is a plain
// name keeps it: "refunds" is "refunds"; "https://refunds.example.com" is
// "https___refunds.example.com". Two audiences of one pod must not share a file name:
// the webhook refuses such a pod.
func TokenFileName(audience string) string {
	b := []byte(audience)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.' && i > 0:
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// TokenPath is the file a client container reads the token for an audience from.
func TokenPath(audience string) string {
	return path.Join(ClientTokenDir, TokenFileName(audience))
}

// tokensPlan is what the webhook adds for client tokens: the projected volume, and its
// mount in the containers (indices into pod.Spec.Containers) and init containers
// (pod.Spec.InitContainers) that get it.
type tokensPlan struct {
	volume            corev1.Volume
	inits, containers []int
}

// planTokens reads the client-token annotations; it reports every problem to bad. It
// returns nil when there is a problem, and when the pod has the tokens already (its
// volume holds what the annotations ask for).
func planTokens(pod *corev1.Pod, bad func(string, ...any)) *tokensPlan {
	ann := pod.Annotations
	problems := 0
	count := func(format string, args ...any) { problems++; bad(format, args...) }

	audiences := parseAudiences(ann, count)
	exp := int64(DefaultClientTokenExpirationSeconds)
	if v, ok := ann[AnnotationClientTokenExpirationSeconds]; ok {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < MinClientTokenExpirationSeconds || n > MaxClientTokenExpirationSeconds {
			count("annotation %s is %q: it must be a number of seconds from %d (Kubernetes' minimum, 10 minutes) to %d", AnnotationClientTokenExpirationSeconds, v, MinClientTokenExpirationSeconds, int64(MaxClientTokenExpirationSeconds))
		} else {
			exp = n
		}
	}
	if pod.Spec.ServiceAccountName == "" {
		count("the pod names no ServiceAccount (spec.serviceAccountName): a token is a ServiceAccount's; give the pod its own")
	}
	if problems > 0 {
		return nil
	}

	plan := &tokensPlan{volume: tokenVolume(audiences, exp)}
	for _, v := range pod.Spec.Volumes {
		if v.Name != ClientTokenVolumeName {
			continue
		}
		if sameTokens(v, plan.volume) {
			return nil // patched before: the pod has its tokens
		}
		count("a volume is already named %q, and it does not hold the tokens annotation %s asks for: remove it (the webhook adds it) or rename it", ClientTokenVolumeName, AnnotationClientTokenAudiences)
		return nil
	}

	// The containers that mount it: those named, or all.
	if v, ok := ann[AnnotationClientTokenContainers]; ok {
		seen := map[string]bool{}
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			switch {
			case name == "":
				count("annotation %s is %q: list container names separated by commas, with none empty", AnnotationClientTokenContainers, v)
				continue
			case seen[name]:
				count("annotation %s names container %q twice", AnnotationClientTokenContainers, name)
				continue
			}
			seen[name] = true
			if name == ContainerName {
				count("annotation %s names container %q, the tokengate sidecar, which never takes a client token: name the containers that call other APIs", AnnotationClientTokenContainers, name)
				continue
			}
			if i := containerIndex(pod.Spec.InitContainers, name); i >= 0 {
				plan.inits = append(plan.inits, i)
			} else if i := containerIndex(pod.Spec.Containers, name); i >= 0 {
				plan.containers = append(plan.containers, i)
			} else {
				count("annotation %s names container %q, which the pod does not have (it has %s)", AnnotationClientTokenContainers, name, containerNames(pod))
			}
		}
	} else {
		// Every container but the sidecar, which a pod may have already (one injected
		// before, or a copy of a stored pod): it sends no client's token.
		for i, c := range pod.Spec.InitContainers {
			if c.Name != ContainerName {
				plan.inits = append(plan.inits, i)
			}
		}
		for i := range pod.Spec.Containers {
			plan.containers = append(plan.containers, i)
		}
	}
	check := func(c corev1.Container) {
		for _, m := range c.VolumeMounts {
			if path.Clean(m.MountPath) == ClientTokenDir {
				count("container %q already mounts volume %q at %s, where the tokens go: move it", c.Name, m.Name, ClientTokenDir)
			}
		}
	}
	for _, i := range plan.inits {
		check(pod.Spec.InitContainers[i])
	}
	for _, i := range plan.containers {
		check(pod.Spec.Containers[i])
	}
	if problems > 0 {
		return nil
	}
	return plan
}

// parseAudiences reads AnnotationClientTokenAudiences.
func parseAudiences(ann map[string]string, bad func(string, ...any)) []string {
	key := AnnotationClientTokenAudiences
	v, ok := ann[key]
	switch {
	case !ok:
		bad("annotation %s is missing: set it to the audiences to get tokens for, separated by commas, such as \"refunds,orders\"", key)
		return nil
	case strings.TrimSpace(v) == "":
		bad("annotation %s is empty: list at least one audience", key)
		return nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > MaxClientTokenAudiences {
		bad("annotation %s lists %d audiences: at most %d", key, len(parts), MaxClientTokenAudiences)
		return nil
	}
	var audiences []string
	seen := map[string]bool{}
	files := map[string]string{} // file name: the audience that has it
	for i, a := range parts {
		a = strings.TrimSpace(a)
		switch {
		case a == "":
			bad("annotation %s has an empty audience (number %d): remove the extra comma", key, i+1)
		case len(a) > MaxClientTokenAudienceLength:
			bad("audience number %d of annotation %s is %d bytes long: at most %d", i+1, key, len(a), MaxClientTokenAudienceLength)
		case !printable(a):
			bad("audience %q of annotation %s has a space, a control or a non-ASCII character: audiences are compared byte for byte, so write it as the API's configuration does", a, key)
		case seen[a]:
			bad("audience %q is listed twice in annotation %s", a, key)
		case files[TokenFileName(a)] != "":
			bad("audiences %q and %q of annotation %s would share the token file %s: they differ only in characters a file name cannot hold", files[TokenFileName(a)], a, key, TokenFileName(a))
		default:
			seen[a] = true
			files[TokenFileName(a)] = a
			audiences = append(audiences, a)
		}
	}
	return audiences
}

// printable reports whether s is printable ASCII without spaces.
func printable(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// tokenVolume is the projected volume: a token per audience.
func tokenVolume(audiences []string, exp int64) corev1.Volume {
	sources := make([]corev1.VolumeProjection, 0, len(audiences))
	for _, a := range audiences {
		e := exp
		sources = append(sources, corev1.VolumeProjection{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Audience: a, ExpirationSeconds: &e, Path: TokenFileName(a),
		}})
	}
	return corev1.Volume{Name: ClientTokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: sources}}}
}

// sameTokens reports whether a pod's volume is want, but for what the API server
// defaults in it (its mode).
func sameTokens(have, want corev1.Volume) bool {
	if have.Projected == nil {
		return false
	}
	h := have.DeepCopy()
	h.Projected.DefaultMode = nil
	return equality.Semantic.DeepEqual(*h, want)
}

func containerIndex(cs []corev1.Container, name string) int {
	for i, c := range cs {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// containerNames lists a pod's containers for a message.
func containerNames(pod *corev1.Pod) string {
	var names []string
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		names = append(names, strconv.Quote(c.Name))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
