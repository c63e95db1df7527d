package main

import (
	"context"
	"fmt"
	"io"

	"github.com/tokengate/tokengate/sidecar"
	"github.com/tokengate/tokengate/sidecar/inject"
)

func runInject(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("inject", "The Kubernetes mutating admission webhook that adds the tokengate sidecar to pods\nlabelled "+inject.LabelInject+"=true. Serves POST "+inject.MutatePath+" over TLS, and /metrics,\n/healthz and /readyz on the admin address. SIGTERM and SIGINT shut it down.", stderr)
	// Every default is inject's (sidecar/inject/defaults.go), which the chart's
	// values.yaml is tested against.
	listen := fs.String("listen", inject.DefaultListenAddr, "address of the webhook (TLS)")
	admin := fs.String("admin", inject.DefaultAdminAddr, "address of /metrics, /healthz and /readyz")
	cert := fs.String("tls-cert", inject.DefaultCertFile, "serving certificate (PEM), re-read when it changes")
	key := fs.String("tls-key", inject.DefaultKeyFile, "its private key (PEM)")
	ver, _ := buildVersion()
	var d inject.Defaults
	fs.StringVar(&d.Image, "sidecar-image", inject.DefaultImageRepository+":"+ver, "image of the injected sidecar")
	fs.StringVar(&d.LogLevel, "sidecar-log-level", inject.DefaultSidecarLogLevel, "default log level of the sidecar")
	fs.StringVar(&d.CPURequest, "sidecar-cpu-request", inject.DefaultSidecarCPURequest, "default CPU request of the sidecar")
	fs.StringVar(&d.MemoryRequest, "sidecar-memory-request", inject.DefaultSidecarMemoryRequest, "default memory request of the sidecar")
	fs.StringVar(&d.MemoryLimit, "sidecar-memory-limit", inject.DefaultSidecarMemoryLimit, "default memory limit of the sidecar")
	fs.StringVar(&d.RedisSecret, "sidecar-redis-secret", "", "Secret (in the pod's namespace) of the replay store's Redis credentials, mounted into every sidecar at "+inject.RedisMountDir+" unless the pod's "+inject.AnnotationRedisSecret+" says otherwise; empty for none")
	drain := fs.Duration("drain-timeout", inject.DefaultDrainTimeout, "how long requests in flight may finish at shutdown")
	var lf logFlags
	lf.register(fs, inject.DefaultLogLevel)
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
