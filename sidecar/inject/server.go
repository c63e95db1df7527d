package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokengate/tokengate/internal/certfile"
)

// Server serves the webhook over TLS and /metrics, /healthz and /readyz over plain
// HTTP on a separate admin listener.
type Server struct {
	Webhook  *Webhook
	Registry *prometheus.Registry
	Log      *slog.Logger
	// Listen and Admin are addresses; Listener and AdminListener, when set, are used
	// instead (tests).
	Listen, Admin           string
	Listener, AdminListener net.Listener
	// CertFile and KeyFile are the serving certificate, re-read when they change (a
	// cert-manager renewal rewrites the Secret's files).
	CertFile, KeyFile string
	// DrainTimeout bounds the shutdown [DefaultDrainTimeout].
	DrainTimeout time.Duration
}

// Run serves until ctx is cancelled, then shuts both listeners down. The certificate
// must be loadable at start.
func (s *Server) Run(ctx context.Context) error {
	certs, err := certfile.NewReloader(s.CertFile, s.KeyFile, s.Log)
	if err != nil {
		return err
	}
	if s.DrainTimeout == 0 {
		s.DrainTimeout = DefaultDrainTimeout
	}
	ln, err := listenOr(s.Listener, s.Listen)
	if err != nil {
		return err
	}
	adminLn, err := listenOr(s.AdminListener, s.Admin)
	if err != nil {
		ln.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(MutatePath, s.Webhook)
	hooks := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug),
	}
	admin := http.NewServeMux()
	admin.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry}))
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }
	admin.HandleFunc("GET /healthz", ok)
	admin.HandleFunc("GET /readyz", ok) // the certificate loaded at start; nothing else to wait for
	adminSrv := &http.Server{Handler: admin, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}

	errs := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errs <- ignoreClosed(hooks.ServeTLS(ln, "", "")) })
	wg.Go(func() { errs <- ignoreClosed(adminSrv.Serve(adminLn)) })
	s.Log.Info("tokengate inject serving", "listen", ln.Addr().String(), "admin", adminLn.Addr().String())
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), s.DrainTimeout)
	defer cancel()
	_ = hooks.Shutdown(shutdown)
	_ = adminSrv.Shutdown(shutdown)
	wg.Wait()
	close(errs)
	for err := range errs {
		if runErr == nil {
			runErr = err
		}
	}
	return runErr
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func listenOr(given net.Listener, addr string) (net.Listener, error) {
	if given != nil {
		return given, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}
