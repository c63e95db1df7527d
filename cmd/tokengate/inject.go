package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/tokengate/tokengate/sidecar"
	"github.com/tokengate/tokengate/sidecar/inject"
)

func runInject(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("inject", "The Kubernetes mutating admission webhook that adds the tokengate sidecar to pods\nlabelled tokengate.io/inject=true. Serves POST /mutate over TLS, and /metrics,\n/healthz and /readyz on the admin address. SIGTERM and SIGINT shut it down.", stderr)
	listen := fs.String("listen", ":8443", "address of the webhook (TLS)")
	admin := fs.String("admin", ":9090", "address of /metrics, /healthz and /readyz")
	cert := fs.String("tls-cert", "/etc/tokengate/tls/tls.crt", "serving certificate (PEM), re-read when it changes")
	key := fs.String("tls-key", "/etc/tokengate/tls/tls.key", "its private key (PEM)")
	ver, _ := buildVersion()
	var d inject.Defaults
	fs.StringVar(&d.Image, "sidecar-image", "ghcr.io/tokengate/tokengate:"+ver, "image of the injected sidecar")
	fs.StringVar(&d.LogLevel, "sidecar-log-level", "info", "default log level of the sidecar")
	fs.StringVar(&d.CPURequest, "sidecar-cpu-request", "50m", "default CPU request of the sidecar")
	fs.StringVar(&d.MemoryRequest, "sidecar-memory-request", "32Mi", "default memory request of the sidecar")
	fs.StringVar(&d.MemoryLimit, "sidecar-memory-limit", "64Mi", "default memory limit of the sidecar")
	drain := fs.Duration("drain-timeout", 10*time.Second, "how long requests in flight may finish at shutdown")
	var lf logFlags
	lf.register(fs, "info")
	if code, exit := parseOrExit(fs, args, stderr); exit {
		return code
	}
	log, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tokengate inject: %v\n", err)
		return exitUsage
	}
	reg := sidecar.NewRegistry(ver)
	wh, err := inject.NewWebhook(d, log, reg)
	if err != nil {
		log.Error("cannot start", "error", err)
		return exitFail
	}
	srv := &inject.Server{Webhook: wh, Registry: reg, Log: log, Listen: *listen, Admin: *admin, CertFile: *cert, KeyFile: *key, DrainTimeout: *drain}
	if err := srv.Run(ctx); err != nil {
		log.Error("inject failed", "error", err)
		return exitFail
	}
	return exitOK
}
