package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/http/httpguts"

	"github.com/tokengate/tokengate/authz"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/policy"
	"github.com/tokengate/tokengate/sidecar"
)

func runAuthz(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("authz", "The decision service for gateways: nginx auth_request ("+authz.PathNginx+"), Traefik forwardAuth\n("+authz.PathTraefik+"), Envoy and Istio ext_authz over HTTP ("+authz.PathEnvoy+"/...) and over gRPC\n("+authz.GRPCService+"), on authz.listen; /metrics, /healthz and /readyz\non the admin address. It trusts the method and URI the gateway forwards, so it must\nnever be reachable by clients (docs/gateways.md). It reloads the configuration file\nwhen it changes. SIGTERM and SIGINT let checks in flight finish, then exit 0.", stderr)
	config := fs.String("config", "", "the configuration file (required)")
	var o policy.Overrides
	fs.StringVar(&o.AuthzListen, "listen", "", "override the file's authz.listen address")
	fs.StringVar(&o.Admin, "admin", "", "override the file's admin address")
	checkOnly := fs.Bool("check-config", false, "validate the configuration file, load every issuer's keys, and exit (0 valid, 2 not)")
	offline := fs.Bool("offline", false, "with --check-config: validate the file only, without reaching the issuers")
	var opts authz.Options
	fs.StringVar(&opts.NginxMethodHeader, "nginx-method-header", authz.DefaultNginxMethodHeader, "the header of nginx's subrequest that carries the original method")
	fs.StringVar(&opts.NginxURIHeader, "nginx-uri-header", authz.DefaultNginxURIHeader, "the header of nginx's subrequest that carries the original URI (path and query)")
	fs.DurationVar(&opts.ShutdownTimeout, "drain-timeout", authz.DefaultShutdownTimeout, "how long checks in flight may finish after SIGTERM")
	var lf logFlags
	lf.register(fs, "info")
	if code, exit := parseOrExit(fs, args, stderr); exit {
		return code
	}
	if *config == "" {
		fmt.Fprintln(stderr, "tokengate authz: --config (or $TOKENGATE_CONFIG) is required")
		return exitUsage
	}
	// A header name the server would refuse is a usage error, found before anything
	// starts (and by --check-config), not a failure once the keys are being fetched.
	for _, f := range []struct{ flag, name string }{
		{"--nginx-method-header", opts.NginxMethodHeader}, {"--nginx-uri-header", opts.NginxURIHeader},
	} {
		if f.name != "" && !httpguts.ValidHeaderFieldName(f.name) {
			fmt.Fprintf(stderr, "tokengate authz: %s %q is not a header name\n", f.flag, f.name)
			return exitUsage
		}
	}
	log, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tokengate authz: %v\n", err)
		return exitUsage
	}
	loaded, err := policy.LoadFile(*config, policy.ForAuthz, o)
	if err != nil {
		fmt.Fprintf(stderr, "tokengate authz: the configuration is not valid:\n%s\n", indent(err.Error()))
		return exitUsage
	}
	if *checkOnly {
		if !*offline {
			problems, err := configWorks(ctx, loaded.Gate)
			if err != nil {
				fmt.Fprintf(stderr, "tokengate authz: %v\n", err)
				return exitUsage
			}
			if len(problems) > 0 {
				fmt.Fprintf(stderr, "tokengate authz: the configuration is valid, but it does not work:\n%s\n(--offline checks the file alone)\n", indent(strings.Join(problems, "\n")))
				return exitUsage
			}
		}
		fmt.Fprintf(stdout, "%s: valid (%d issuers, %d routes, authz on %s)\n", *config, len(loaded.Gate.Issuers), len(loaded.Gate.Routes), loaded.AuthzListen)
		return exitOK
	}
	if err := serveAuthz(ctx, *config, loaded, o, opts, log); err != nil {
		log.Error("authz failed", "error", err)
		return exitFail
	}
	return exitOK
}

// serveAuthz runs the decision service until ctx ends: the configuration watched and
// reloaded, the decision endpoints on authz.listen, the admin endpoints on admin.
func serveAuthz(ctx context.Context, path string, first *policy.Loaded, o policy.Overrides, opts authz.Options, log *slog.Logger) error {
	ver, _ := buildVersion()
	reg := sidecar.NewRegistry(ver)
	store, closeStore, err := sidecar.NewReplayStore(first.Replay)
	if err != nil {
		return err
	}
	defer func() {
		if err := closeStore(); err != nil {
			log.Warn("closing the replay store", "error", err)
		}
	}()
	// The Watcher's key sets and file watch live until the servers have stopped.
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	w, err := policy.Watch(watchCtx, path, policy.WatchOptions{
		Registerer: reg, Logger: log, Overrides: o, Purpose: policy.ForAuthz,
		Gate: middleware.Options{Replay: store},
		OnReload: func(l *policy.Loaded, err error) {
			// The listeners stay where they were bound, as the sidecar's do: say so,
			// rather than let "configuration reloaded" suggest the new address works.
			if err == nil && (l.AuthzListen != first.AuthzListen || l.Admin != first.Admin) {
				log.Warn("authz.listen and admin change only on restart; the rest of the configuration is applied",
					"listen", first.AuthzListen, "admin", first.Admin)
			}
		},
	})
	if err != nil {
		return err
	}
	defer w.Close()

	opts.Registerer, opts.Logger = reg, log
	srv, err := authz.New(func() authz.Snapshot {
		l, g := w.Current()
		id := l.Identity()
		return authz.Snapshot{Gate: g, Identity: id, IdentityHeaders: id.Headers()}
	}, opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", first.AuthzListen)
	if err != nil {
		return fmt.Errorf("authz.listen: %w", err)
	}
	adminLn, err := net.Listen("tcp", first.Admin)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin: %w", err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	admin := &http.Server{
		Handler:           authzAdmin(runCtx, w, reg),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	adminDone := make(chan error, 1)
	go func() {
		err := admin.Serve(adminLn)
		if !errors.Is(err, http.ErrServerClosed) {
			stopRun() // without probes and metrics, stop deciding too
		}
		adminDone <- err
	}()
	log.Info("tokengate authz serving", "listen", ln.Addr().String(), "admin", adminLn.Addr().String(),
		"endpoints", []string{authz.PathNginx, authz.PathTraefik, authz.PathEnvoy + "/", authz.GRPCService})

	runErr := srv.Run(runCtx, ln) // returns once the checks in flight have ended
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = admin.Shutdown(shut)
	if err := <-adminDone; !errors.Is(err, http.ErrServerClosed) && runErr == nil {
		runErr = fmt.Errorf("admin: %w", err)
	}
	log.Info("stopped")
	return runErr
}

// authzAdmin serves /metrics, /healthz (alive) and /readyz (the configuration's
// issuers' keys are loaded, and not shutting down), as the sidecar's admin port does.
func authzAdmin(running context.Context, w *policy.Watcher, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(rw, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		switch {
		case running.Err() != nil:
			http.Error(rw, "shutting down", http.StatusServiceUnavailable)
		case !w.Ready():
			http.Error(rw, "the issuers' keys are not loaded yet", http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(rw, "ok\n")
		}
	})
	return mux
}
