package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokengate/tokengate/internal/promreg"
)

// maxReviewBytes caps an AdmissionReview: the API server's own request limit is 3 MiB.
const maxReviewBytes = 4 << 20

// Webhook is the admission plumbing around Patch: AdmissionReview v1 in, AdmissionReview
// v1 out. Pod creations get the sidecar, client tokens, both, a refusal, or nothing;
// everything else is allowed unchanged.
type Webhook struct {
	Defaults Defaults
	Log      *slog.Logger
	requests *prometheus.CounterVec
}

// NewWebhook registers the webhook's metric on reg.
func NewWebhook(d Defaults, log *slog.Logger, reg prometheus.Registerer) (*Webhook, error) {
	c, err := promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_inject_requests_total",
		Help: "Admission requests of the injection webhook, by result (injected, skipped, refused, error).",
	}, []string{"result"}))
	if err != nil {
		return nil, err
	}
	for _, r := range []string{string(Injected), string(Skipped), string(Refused), "error"} {
		c.WithLabelValues(r)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Webhook{Defaults: d, Log: log, requests: c}, nil
}

func (wh *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST with an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReviewBytes))
	if err != nil {
		wh.requests.WithLabelValues("error").Inc()
		http.Error(w, "the AdmissionReview is too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		wh.requests.WithLabelValues("error").Inc()
		http.Error(w, "the body is not an AdmissionReview with a request", http.StatusBadRequest)
		return
	}
	resp := wh.review(review.Request)
	resp.UID = review.Request.UID
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// review answers one admission request.
func (wh *Webhook) review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	log := wh.Log.With("namespace", req.Namespace, "name", req.Name, "uid", string(req.UID))
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" || req.Operation != admissionv1.Create {
		wh.requests.WithLabelValues(string(Skipped)).Inc()
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		wh.requests.WithLabelValues("error").Inc()
		log.Error("pod not decodable", "error", err)
		return deny(http.StatusBadRequest, "tokengate: the pod in the request cannot be decoded: "+err.Error())
	}
	if pod.Name == "" {
		pod.Name = pod.GenerateName + "…" // for the log: the API server names it later
	}
	ops, outcome, err := Patch(&pod, wh.Defaults)
	wh.requests.WithLabelValues(string(outcome)).Inc()
	var refusal *Refusal
	switch {
	case errors.As(err, &refusal):
		log.Warn("pod refused", "pod", pod.Name, "problems", refusal.Problems)
		return deny(http.StatusBadRequest, refusal.Error())
	case err != nil:
		log.Error("injection failed", "pod", pod.Name, "error", err)
		return deny(http.StatusInternalServerError, "tokengate: "+err.Error())
	case outcome == Skipped:
		log.Debug("pod skipped", "pod", pod.Name)
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return deny(http.StatusInternalServerError, fmt.Sprintf("tokengate: encoding the patch: %v", err))
	}
	sidecar, tokens := added(ops)
	log.Info("pod patched", "pod", pod.Name, "sidecar", sidecar, "clientTokens", tokens)
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, PatchType: &pt, Patch: patch}
}

// added says what a patch adds, for the log line: the sidecar, client tokens.
func added(ops []Op) (sidecar, tokens bool) {
	for _, op := range ops {
		switch v := op.Value.(type) {
		case corev1.Container, []corev1.Container:
			sidecar = true
		case corev1.Volume:
			tokens = tokens || v.Name == ClientTokenVolumeName
		case []corev1.Volume:
			for _, vol := range v {
				tokens = tokens || vol.Name == ClientTokenVolumeName
			}
		}
	}
	return sidecar, tokens
}

func deny(code int32, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: msg}}
}
