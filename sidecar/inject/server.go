package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	certs, err := newCertReloader(s.CertFile, s.KeyFile, s.Log)
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
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get},
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

// certReloader serves the certificate of two files and re-reads them when either
// changes, checked at most once a second; a pair that does not load keeps the last good
// one (and says so in the log).
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   stamp
	checked time.Time
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("loading the serving certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert = &cert
	c.stamp = c.stamps()
	return nil
}

// stamp identifies the versions of the two files. A modification time alone misses a
// renewal written within the file system's timestamp tick of the previous one (a few
// milliseconds), and rename keeps the new file's time; the file's identity (a renamed
// or re-linked file is a new inode, as a Secret volume's update is) and size catch it.
type stamp [2]os.FileInfo

func (c *certReloader) stamps() stamp {
	var s stamp
	for i, f := range []string{c.certFile, c.keyFile} {
		if st, err := os.Stat(f); err == nil {
			s[i] = st
		}
	}
	return s
}

func (s stamp) same(o stamp) bool {
	for i := range s {
		a, b := s[i], o[i]
		if a == nil || b == nil {
			if a != b {
				return false
			}
			continue
		}
		if !os.SameFile(a, b) || !a.ModTime().Equal(b.ModTime()) || a.Size() != b.Size() {
			return false
		}
	}
	return true
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) > time.Second {
		c.checked = now
		if st := c.stamps(); !st.same(c.stamp) {
			if err := c.load(); err != nil {
				c.log.Error("new serving certificate not loaded; the previous one stays", "error", err)
				c.stamp = st // do not retry on every handshake
			} else {
				c.log.Info("serving certificate reloaded")
			}
		}
	}
	return c.cert, nil
}
