// Package inject is the Kubernetes mutating admission webhook that adds the tokengate
// sidecar to the pods that ask for it, and ServiceAccount tokens to the pods that call
// them.
//
// A pod opts in with the label tokengate.io/inject: "true" and says how with
// annotations (see annotations.go): the port its API listens on, on 127.0.0.1, and the
// ConfigMap that holds its tokengate configuration. The webhook adds the sidecar as a
// native sidecar (an init container with restartPolicy Always, first among the init
// containers, with a startup probe), so that it serves before the API takes traffic;
// ports tokengate and tokengate-admin; liveness on /healthz and readiness on /readyz;
// resource requests and a memory limit; a read-only root file system, a non-root user,
// no privilege escalation, every capability dropped; the ConfigMap volume; when the pod
// (tokengate.io/redis-secret) or the injector names one, the Secret of the replay
// store's Redis credentials, mounted read-only into the sidecar only; and the
// annotation tokengate.io/status: injected, which makes a second injection a no-op.
//
// A pod that calls such APIs opts in with the label tokengate.io/client-tokens: "true"
// and names their audiences in tokengate.io/client-token-audiences (with
// tokengate.io/client-token-expiration-seconds and tokengate.io/client-token-containers
// to say more). The webhook adds no container to it: a projected volume with a
// ServiceAccount token per audience, which the kubelet requests and rotates, mounted
// read-only at /var/run/secrets/tokengate.io/tokens (TokenPath names each file) into
// every container, or those named. A pod that has that volume already is left alone.
// A pod may ask for both; the chart's webhook configuration has a webhook per label,
// since an objectSelector cannot match either of two, and both call Patch.
//
// A pod that asks with a label or annotations that cannot work is refused, with a
// message that lists every problem and how to fix it: an API that asked for protection
// never starts unprotected, nor a client without its tokens.
//
// # Layout
//
// Patch is a pure function from a pod to a JSON Patch; Webhook is the AdmissionReview
// plumbing around it; Server serves it over TLS (re-reading its certificate when the
// files change) with /metrics, /healthz and /readyz on a separate listener.
package inject
